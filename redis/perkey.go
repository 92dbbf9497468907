package redis

import (
	"strconv"
)

// In per-key mode (ListenPerKey) the tracked connection is set up with
//
//	CLIENT TRACKING ON
//
// and Redis remembers which keys it read: a change of one of them (and its
// expiry, its eviction, FLUSHDB, or Redis dropping the key from its
// tracking table) is pushed in-band, once, and the key is forgotten until
// it is read again. Instances are told only of the sessions they read, so
// Redis's work per write does not grow with the number of instances, and
// a write of a key nobody read costs Redis no tracking work at all.
//
// Not NOLOOP: Redis drops every invalidation meant for a NOLOOP connection
// that it makes while a command of that connection is being processed,
// taking it for the connection's own change, and it evicts keys
// (maxmemory) and trims its tracking table (tracking-table-max-keys) just
// before running whichever command found the bound exceeded. A store's own
// read or write would then end the tracking of sessions it holds with
// nothing told.
//
// So every read whose value may be kept locally goes on this connection
// (opGet: GET or GETRANGE, then PTTL), and its reply comes before any
// push about a later change. A write sent here makes Redis forget the key
// for this connection (and push its invalidation, right after the write's
// reply, if the key was tracked here): the writer's copy would never hear
// of the next change. A write whose caller keeps a copy is therefore
// followed, in the same batch, by a read of its key (verify), which has
// Redis track the key again; the copy is kept only if that read returned
// exactly the value the caller holds (a change that slipped in between is
// then in the copy's place, and the copy is dropped). Between the reply of
// a write that changed the key and the verifying read's, nothing about the
// key but the write's own invalidation can be pushed here (the write ended
// the key's tracking for every connection, and only the read begins it
// again): that one is not reported. A write without verify leaves nothing
// to keep.

// encode encodes r's commands into r.cmd, as tracked.send sends them,
// for the key prefix+r.id.
func (r *request) encode(prefix string) {
	var kb [128]byte // the key, built without an allocation unless longer
	key := append(append(kb[:0], prefix...), r.id...)
	r.cmd, r.two = appendRequest(r.cmd[:0], r, key)
	if r.two {
		r.cmd = appendCheck(r.cmd, r, key)
	}
}

// appendRequest appends r's command on key, and reports whether a second
// command (appendCheck) follows it.
func appendRequest(buf []byte, r *request, key []byte) ([]byte, bool) {
	var n [20]byte
	switch r.kind {
	case opSet:
		ms := strconv.AppendInt(n[:0], max(r.ttl.Milliseconds(), 1), 10)
		buf = appendCommand(buf, []byte("SET"), key, r.value, []byte("PX"), ms)
	case opDel:
		buf = appendCommand(buf, []byte("DEL"), key)
	case opPExpire:
		ms := strconv.AppendInt(n[:0], max(r.ttl.Milliseconds(), 1), 10)
		buf = appendCommand(buf, []byte("PEXPIRE"), key, ms)
	case opGet:
		if r.limit > 0 {
			// At most limit+1 bytes; "" for a missing key, which PTTL -2
			// tells from an empty value.
			buf = appendCommand(buf, []byte("GETRANGE"), key, []byte("0"), strconv.AppendInt(n[:0], int64(r.limit), 10))
		} else {
			buf = appendCommand(buf, []byte("GET"), key)
		}
		return buf, true
	case opPing:
		return appendCommand(buf, []byte("PING")), false
	}
	return buf, r.verify
}

// appendCheck appends the second command of r: PTTL after opGet's read,
// or the read that verifies a write. It reads one byte more than the
// value expected, so that a longer value costs no more, and uses GET for
// an empty one (GETRANGE answers "" for a missing key too).
func appendCheck(buf []byte, r *request, key []byte) []byte {
	switch {
	case r.kind == opGet:
		return appendCommand(buf, []byte("PTTL"), key)
	case len(r.value) == 0:
		return appendCommand(buf, []byte("GET"), key)
	}
	var n [20]byte
	return appendCommand(buf, []byte("GETRANGE"), key, []byte("0"), strconv.AppendInt(n[:0], int64(len(r.value)), 10))
}

// replyOf makes r's reply from Redis's answers: v to its last command and,
// for a request of two commands, r.first to the first.
func replyOf(r *request, v value) reply {
	if r.kind == opGet {
		get := r.first
		switch {
		case get.err != nil:
			return reply{err: get.err}
		case v.err != nil:
			return reply{err: v.err}
		}
		return reply{found: get.kind == '$' && v.n != -2, value: get.bulk, ttl: v.n}
	}
	w := v
	if r.verify {
		w = r.first
	}
	rep := reply{err: w.err}
	if w.kind == ':' {
		rep.found = w.n > 0
	}
	if r.verify && w.err == nil {
		rep.verified = v.kind == '$' && v.equal // a verifying read is read by readMatching (tracked.read)
	}
	return rep
}
