package sigma

import "unique"

// acMachine is an Aho-Corasick automaton over the lower-cased keyword
// values of every rule of an Index (Sigma keyword searches are substring
// searches over the event's text). One pass over the event's text answers
// all of them, instead of one substring search per keyword per string. It
// is a DFA over byte classes (bytes that occur in no pattern share class
// 0), built once and read-only after.
type acMachine struct {
	classOf  [256]int32
	nclass   int32
	delta    []int32 // node*nclass + class → next node
	out      [][]int32
	patterns int
	ids      map[unique.Handle[string]]int32 // pattern → id (a handle hashes as a pointer: looked up per keyword value per event)
}

// newAC builds the automaton for pats (ids are positions in pats).
func newAC(pats []string) *acMachine {
	a := &acMachine{patterns: len(pats), ids: make(map[unique.Handle[string]]int32, len(pats))}
	for i, p := range pats {
		a.ids[unique.Make(p)] = int32(i)
	}
	a.nclass = 1
	for _, p := range pats {
		for i := 0; i < len(p); i++ {
			if a.classOf[p[i]] == 0 {
				a.classOf[p[i]] = a.nclass
				a.nclass++
			}
		}
	}
	nc := int(a.nclass)
	newNode := func() int32 {
		for i := 0; i < nc; i++ {
			a.delta = append(a.delta, -1)
		}
		a.out = append(a.out, nil)
		return int32(len(a.out) - 1)
	}
	newNode() // root
	for id, p := range pats {
		n := int32(0)
		for i := 0; i < len(p); i++ {
			c := a.classOf[p[i]]
			next := a.delta[int(n)*nc+int(c)]
			if next < 0 {
				next = newNode()
				a.delta[int(n)*nc+int(c)] = next
			}
			n = next
		}
		a.out[n] = append(a.out[n], int32(id))
	}
	// Breadth-first: failure links, then complete the transitions so the
	// scan never follows a failure link.
	fail := make([]int32, len(a.out))
	queue := make([]int32, 0, len(a.out))
	for c := 0; c < nc; c++ {
		if next := a.delta[c]; next > 0 {
			fail[next] = 0
			queue = append(queue, next)
		} else {
			a.delta[c] = 0
		}
	}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		a.out[n] = append(a.out[n], a.out[fail[n]]...)
		for c := 0; c < nc; c++ {
			next := a.delta[int(n)*nc+c]
			if next < 0 {
				a.delta[int(n)*nc+c] = a.delta[int(fail[n])*nc+c]
				continue
			}
			fail[next] = a.delta[int(fail[n])*nc+c]
			queue = append(queue, next)
		}
	}
	return a
}

// scan marks hits[id] = gen for every pattern occurring in s and appends
// the ids newly marked to list.
func (a *acMachine) scan(s string, hits []uint32, gen uint32, list []int32) []int32 {
	nc := int(a.nclass)
	n := int32(0)
	for i := 0; i < len(s); i++ {
		n = a.delta[int(n)*nc+int(a.classOf[s[i]])]
		for _, id := range a.out[n] {
			if hits[id] != gen {
				hits[id] = gen
				list = append(list, id)
			}
		}
	}
	return list
}
