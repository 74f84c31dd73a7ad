package sigma

import (
	"reflect"
	"testing"
)

// A producer forwarding a Sysmon registry event (event id 13) unchanged
// under data: the default field map sends User, TargetObject and EventType
// to Vigil fields the event does not set (or sets to something else), and
// the rule must still match through data.<Field>.
func TestFallbackSysmonRegistryUnderData(t *testing.T) {
	const ruleSrc = `title: Run key set by a user
logsource:
  category: registry_set
  product: windows
detection:
  selection:
    EventType: SetValue
    TargetObject|contains: '\CurrentVersion\Run\'
    Details|endswith: '.exe'
  user:
    User|contains: 'bob'
  condition: selection and user
`
	m := compileOne(t, ruleSrc)
	ev := `{"type":"audit.registry","source":"sysmon","data":{"EventID":13,"EventType":"SetValue",
		"TargetObject":"HKU\\S-1-5-21\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\updater",
		"Details":"C:\\Users\\bob\\AppData\\updater.exe","Image":"C:\\Windows\\regedit.exe","User":"CORP\\bob",
		"UtcTime":"2025-03-09 23:01:02.345"}}`
	if !m.Match(mustEvent(t, ev)) {
		t.Fatalf("Sysmon registry event under data does not match (fields %v)", m.Fields())
	}
	// The mapped Vigil field wins when the event sets it: user is alice, so
	// data.User is not read.
	withUser := `{"type":"audit.registry","user":"alice","data":{"EventType":"SetValue",
		"TargetObject":"HKU\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\x","Details":"x.exe","User":"CORP\\bob"}}`
	if m.Match(mustEvent(t, withUser)) {
		t.Fatal("data.User was read although the event's user is set")
	}
	// EventType goes to Vigil's type, which every event has: data.EventType
	// is read first.
	other := `{"type":"audit.registry","data":{"EventType":"DeleteValue",
		"TargetObject":"HKU\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\x","Details":"x.exe","User":"bob"}}`
	if m.Match(mustEvent(t, other)) {
		t.Fatal("DeleteValue matched EventType: SetValue")
	}
}

// A CloudTrail record forwarded unchanged under data.
func TestFallbackCloudTrailUnderData(t *testing.T) {
	const ruleSrc = `title: Access key created from outside
logsource:
  product: aws
  service: cloudtrail
detection:
  selection:
    eventSource: iam.amazonaws.com
    eventName: CreateAccessKey
    userIdentity.userName: mallory
  internal:
    sourceIPAddress|cidr: 10.0.0.0/8
  condition: selection and not internal
`
	m := compileOne(t, ruleSrc)
	ev := `{"type":"audit.cloudtrail","source":"cloudtrail","data":{"eventVersion":"1.08","eventSource":"iam.amazonaws.com",
		"eventName":"CreateAccessKey","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7",
		"userIdentity":{"type":"IAMUser","userName":"mallory","arn":"arn:aws:iam::123456789012:user/mallory"}}}`
	if !m.Match(mustEvent(t, ev)) {
		t.Fatalf("CloudTrail event under data does not match (fields %v)", m.Fields())
	}
	inside := `{"type":"audit.cloudtrail","data":{"eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey",
		"sourceIPAddress":"10.1.2.3","userIdentity":{"userName":"mallory"}}}`
	if m.Match(mustEvent(t, inside)) {
		t.Fatal("internal source address (data.sourceIPAddress) was not read by the filter")
	}
}

func TestResolveAll(t *testing.T) {
	fm := DefaultFieldMap()
	for name, want := range map[string][]string{
		"User":            {"user", "data.User"},
		"TargetObject":    {"resource", "data.TargetObject"},
		"EventType":       {"data.EventType", "type"},
		"user":            {"user"},
		"data.x":          {"data.x"},
		"WorkstationName": {"data.WorkstationName"},
	} {
		if got := fm.ResolveAll(name); !reflect.DeepEqual(got, want) {
			t.Errorf("ResolveAll(%q) = %v, want %v", name, got, want)
		}
	}
}
