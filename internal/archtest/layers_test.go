package archtest

// m is the module path; every row below is a full import path (or a prefix
// ending in "/") so that scripts/relayout.sh, which rewrites import paths,
// rewrites this table with them.
const m = "github.com/vigil-sec/vigil/"

// Layers, innermost first. A package may import (outside its tests) only
// packages of the layers its layer lists in mayImport. Transports and
// inputs/outputs may not import one another (see transportLike).
const (
	core      = "core"      // the domain: events, errors, filters, the authorization policy
	lib       = "lib"       // leaf utilities that know no domain (data dir lock, TLS material)
	settings  = "settings"  // the configuration model
	identity  = "identity"  // credentials: JWT verification, API tokens
	log       = "log"       // the JetStream log
	fanout    = "fanout"    // the hub
	service   = "service"   // ingest, detection, statistics, metrics, the input/output cores
	wire      = "wire"      // the WebSocket connection machinery every WS transport shares
	transport = "transport" // a client-facing protocol: one package (tree) per protocol
	input     = "input"     // an input adapter (syslog, OTLP, Falco, CEF, ...)
	output    = "output"    // an output adapter
	assembly  = "assembly"  // composition: access assembly, server routes, the app
	cmd       = "cmd"       // the binary
	public    = "public"    // the public Go client
	testbench = "testbench" // test benches and black-box test packages
)

var mayImport = map[string][]string{
	core:      {core},
	lib:       {lib},
	settings:  {core, lib, identity},
	identity:  {core, lib, log, identity},
	log:       {core, lib},
	fanout:    {core, lib},
	service:   {core, lib, identity, log, fanout, service},
	wire:      {core, lib, fanout},
	transport: {core, lib, settings, identity, log, fanout, service, wire, transport},
	input:     {core, lib, identity, log, service, input},
	output:    {core, lib, identity, log, fanout, service, output},
	assembly:  {core, lib, settings, identity, log, fanout, service, wire, transport, input, output, assembly},
	cmd:       {core, lib, settings, identity, log, fanout, service, wire, transport, input, output, assembly, public},
	public:    {}, // the public client imports nothing of the server: the wire format is its contract
	testbench: {core, lib, settings, identity, log, fanout, service, wire, transport, input, output, assembly, testbench, public},
}

// transportLike layers hold adapters that must stay independent of one
// another: a package of such a layer may import another package of the
// same layer only inside its own tree (graphql → graphql/generated), and
// an input may use another input's mappers (syslog → authlog, cef).
var transportLike = map[string]bool{transport: true, output: true}

// layerOf maps a package to its layer: an exact path, else the longest
// prefix ending in "/". Keep it in the order of the proposed layout in
// docs/architecture.md.
var layerOf = map[string]string{
	m + "internal/event":    core,
	m + "internal/domain":   core,
	m + "internal/filter":   core,
	m + "internal/auth":     core, // the policy: principals, roles, MayRead, masking, limits
	m + "internal/archtest": lib,

	m + "internal/datadir":                       lib,
	m + "internal/tlsconfig":                     lib,
	m + "internal/tlsconfig/":                    lib,
	m + "internal/config":                        settings,
	m + "internal/auth/jwtauth":                  identity,
	m + "internal/auth/tokens":                   identity,
	m + "internal/store":                         log,
	m + "internal/store/idindex":                 lib, // the on-disk id index: imports nothing of Vigil; internal/store uses it
	m + "internal/hub":                           fanout,
	m + "internal/ingest":                        service,
	m + "internal/detect":                        service,
	m + "internal/detect/":                       service,
	m + "internal/stats":                         service,
	m + "internal/metrics":                       service,
	m + "internal/demo":                          service,
	m + "internal/filter/dbsecfilter":            service, // the database-security dialect's model, shared by dbsec and graphql
	m + "internal/inputs":                        service, // the input core: Message, Mapper, Chain
	m + "internal/inputs/":                       input,
	m + "internal/outputs":                       service, // the output core: Message, Sender, Type
	m + "internal/outputs/":                      output,
	m + "internal/outputs/outhttp":               service,   // the HTTP sending every HTTP output shares
	m + "internal/outputs/types":                 assembly,  // wires every output type into the node
	m + "internal/outputs/outputtest":            testbench, // a fake receiver for output tests
	m + "internal/transport/wsconn":              wire,
	m + "internal/transport/wsnative":            transport,
	m + "internal/transport/sse":                 transport,
	m + "internal/transport/rest":                transport,
	m + "internal/transport/graphql":             transport,
	m + "internal/transport/graphql/":            transport,
	m + "internal/transport/natsingest":          transport,
	m + "internal/transport/compat/wsdetections": transport,
	m + "internal/transport/compat/phase8":       transport,
	m + "internal/transport/compat/dbsec":        transport,
	m + "internal/dashboard":                     transport,
	m + "internal/dashboard/":                    transport,
	m + "internal/auth/access":                   assembly,
	m + "internal/server":                        assembly,
	m + "internal/app":                           assembly,
	m + "cmd/":                                   cmd,
	m + "scripts/":                               cmd, // generators run by hand (go run ./scripts/...)
	m + "client":                                 public,
	m + "internal/testenv":                       testbench,
	m + "internal/testnode":                      testbench,
	m + "internal/testkit":                       testbench,
	m + "test/":                                  testbench,
}

// noNATS lists packages whose transitive dependencies must not include
// the NATS server or client: the core and the layers that speak of events
// and acknowledgements without storing them.
var noNATS = []string{
	m + "internal/event",
	m + "internal/domain",
	m + "internal/filter",
	m + "internal/auth",
	m + "internal/ingest",
	m + "internal/config",
}
