package redis

import (
	"errors"
	"fmt"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

// replyError is a Redis reply of text, as go-redis returns it.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

var _ goredis.Error = replyError("")

// TestDeniesPermission: the replies of Redis 7.0 to a command its ACL
// denies, plain (NOPERM) or called by a script (ERR and the text of
// scriptCall), wrapped or not, are denials; other replies, an ERR of
// another text among them, and failures are not.
func TestDeniesPermission(t *testing.T) {
	for _, c := range []struct {
		reply  string
		denies bool
	}{
		{"NOPERM this user has no permissions to run the 'set' command", true},
		{"NOPERM this user has no permissions to run the 'evalsha' command", true},
		{"NOPERM this user has no permissions to access one of the keys used as arguments", true},
		{"ERR The user executing the script can't run this command or subcommand script: 219bb33e7c6773035c720850383aa2ebb63d9904, on @user_script:1.", true},
		{"ERR The user executing the script can't access at least one of the keys mentioned in the command script: 219bb33e7c6773035c720850383aa2ebb63d9904, on @user_script:1.", true},
		{"ERR The user executing the script can't publish to the channel mentioned in the command script: 219bb33e7c6773035c720850383aa2ebb63d9904, on @user_script:1.", true},
		{"ERR The user executing the script is lacking the permissions for the command script: 219bb33e7c6773035c720850383aa2ebb63d9904, on @user_script:1.", true},
		{"ERR unknown command 'strlen'", false},
		{"WRONGTYPE Operation against a key holding the wrong kind of value", false},
		{"EXECABORT Transaction discarded because of: NOPERM this user has no permissions to run the 'set' command", false},
		{"OOM command not allowed when used memory > 'maxmemory'.", false},
	} {
		for _, err := range []error{replyError(c.reply), fmt.Errorf("redis: EVALSHA: %w", replyError(c.reply))} {
			if got := deniesPermission(err); got != c.denies {
				t.Errorf("deniesPermission(%q) = %v; want %v", err, got, c.denies)
			}
		}
	}
	for _, err := range []error{nil, errors.New("NOPERM this user has no permissions to run the 'set' command")} {
		if deniesPermission(err) {
			t.Errorf("deniesPermission(%v) = true; want false: no reply", err)
		}
	}
}
