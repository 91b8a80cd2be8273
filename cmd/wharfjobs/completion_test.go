package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCompletion: the bash and zsh scripts name every command and every
// flag of it, bash loads the bash one, and it completes commands and
// flags; another shell is a usage error.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh"} {
		code, out, errOut := runCLI(t, "completion", shell)
		if code != 0 || errOut != "" {
			t.Fatalf("completion %s: exit %d, stderr %q", shell, code, errOut)
		}
		for _, c := range completionCommands(t.Context()) {
			if !strings.Contains(out, "\t"+c.name+")") {
				t.Errorf("the %s script does not complete the flags of %s", shell, c.name)
			}
			for _, f := range c.flags {
				if !strings.Contains(out, f.dashed()) {
					t.Errorf("the %s script does not name %s %s", shell, c.name, f.dashed())
				}
			}
		}
		for name := range commands() {
			if !strings.Contains(out, name) {
				t.Errorf("the %s script does not name the command %s", shell, name)
			}
		}
	}
	cmds := map[string]bool{}
	for _, c := range completionCommands(t.Context()) {
		cmds[c.name] = true
		if c.name == "logs" && !hasFlag(c, "--follow", false) || c.name == "logs" && !hasFlag(c, "--since", true) {
			t.Errorf("logs' flags: %+v", c.flags)
		}
	}
	if len(cmds) != len(commands()) {
		t.Errorf("completion knows %d commands, there are %d", len(cmds), len(commands()))
	}
	if code, _, errOut := runCLI(t, "completion", "fish"); code != ExitUsage || !strings.Contains(errOut, `no completion for "fish"`) {
		t.Errorf("completion fish: exit %d, %q", code, errOut)
	}

	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	_, script, _ := runCLI(t, "completion", "bash")
	complete := func(words ...string) string {
		t.Helper()
		cmd := exec.Command("bash", "-c", `source /dev/stdin; complete -p wharfjobs; COMP_WORDS=("$@"); COMP_CWORD=$(($#-1)); _wharfjobs; echo "${COMPREPLY[*]}"`, "bash")
		cmd.Args = append(cmd.Args, words...)
		cmd.Stdin = strings.NewReader(script)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v: %s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if !strings.Contains(lines[0], "-F _wharfjobs wharfjobs") {
			t.Fatalf("complete -p wharfjobs: %q", lines[0])
		}
		return lines[len(lines)-1]
	}
	if got := complete("wharfjobs", "wor"); got != "worker workspace-fetch" {
		t.Errorf("wharfjobs wor<TAB>: %q", got)
	}
	if got := complete("wharfjobs", "logs", "--f"); got != "--follow --fs-root" {
		t.Errorf("wharfjobs logs --f<TAB>: %q", got)
	}
	if got := complete("wharfjobs", "completion", "z"); got != "zsh" {
		t.Errorf("wharfjobs completion z<TAB>: %q", got)
	}
}

func hasFlag(c completionCommand, name string, value bool) bool {
	for _, f := range c.flags {
		if f.dashed() == name {
			return f.value == value
		}
	}
	return false
}
