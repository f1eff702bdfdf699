#!/usr/bin/env python3
"""Writes twofactor's bash or zsh completion from the CLI's own command table
(`twofactor --list-commands`), so the completions know exactly the commands
and options the parser accepts.

    completions.py TWOFACTOR bash|zsh OUTPUT

Beyond the table: app names come from `twofactor apps` and request ids from
the recent deliveries (`twofactor --json deliveries`), each asked of the
daemon only when a word in that place is being completed, on the socket the
command line names."""
import json
import subprocess
import sys

# Option or positional names whose values the daemon knows.
APP_VALUES = {"--app"}
REQUEST_VALUES = {"--id", "id"}
FILE_VALUES = {"--output", "-o", "--socket", "--config", "--checkpoint", "--input", "--file"}


def walk(node, out):
    out.append(node)
    for c in node["commands"]:
        walk(c, out)
    return out


def tables(root):
    """Per command path: subcommands, options, options taking values, choices, positionals."""
    subs, opts, valued, choices, kinds = {}, {}, {}, {}, {}
    for n in walk(root, []):
        # The root is "twofactor": an associative array takes no empty key.
        p = ("twofactor " + n["path"]).strip()
        subs[p] = " ".join(c["path"].split(" ")[-1] for c in n["commands"])
        names, takes = [], []
        for o in n["options"]:
            names += o["names"]
            if o["takesValue"]:
                takes += o["names"]
                for name in o["names"]:
                    if o["choices"]:
                        choices[p + " " + name] = " ".join(o["choices"])
                    elif name in APP_VALUES:
                        kinds[p + " " + name] = "app"
                    elif name in REQUEST_VALUES:
                        kinds[p + " " + name] = "request"
                    elif name in FILE_VALUES:
                        kinds[p + " " + name] = "file"
        opts[p] = " ".join(names)
        valued[p] = " ".join(takes)
        for i, pos in enumerate(n["positionals"]):
            kinds["%s #%d" % (p, i)] = "request" if pos["name"] in REQUEST_VALUES else ""
    return subs, opts, valued, choices, kinds


def quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def assoc(name, table, shell):
    decl = "declare -gA" if shell == "bash" else "typeset -gA"
    lines = ["%s %s=(" % (decl, name)]
    for k in sorted(table):
        lines.append("  [%s]=%s" % (quote(k), quote(table[k])))
    lines.append(")")
    return "\n".join(lines)


# The part both shells share: where the cursor is in the command tree.
# Sets _tf_path (the command path), _tf_npos (positionals seen), _tf_socket
# and, when the word before the cursor is an option taking a value, _tf_opt.
WALK = r'''
_twofactor_locate() {
  local i=1 w opt
  _tf_path=twofactor _tf_npos=0 _tf_socket=() _tf_opt=""
  while (( i < _tf_cword )); do
    w="${_tf_words[i]}"
    if [[ $w == --*=* ]]; then
      [[ ${w%%=*} == --socket ]] && _tf_socket=(--socket "${w#*=}")
    elif [[ $w == -* ]]; then
      if [[ " ${_tf_valued[$_tf_path]} ${_tf_valued[twofactor]} " == *" $w "* ]]; then
        (( i + 1 == _tf_cword )) && _tf_opt="$w"
        [[ $w == --socket ]] && _tf_socket=(--socket "${_tf_words[i+1]}")
        (( i++ ))
      fi
    elif [[ " ${_tf_subs[$_tf_path]} " == *" $w "* ]]; then
      _tf_path="$_tf_path $w"
      _tf_npos=0
    else
      (( _tf_npos++ ))
    fi
    (( i++ ))
  done
}

_twofactor_apps() {
  command twofactor "${_tf_socket[@]}" apps 2>/dev/null | while read -r name _; do printf '%s\n' "$name"; done
}

_twofactor_requests() {
  command twofactor "${_tf_socket[@]}" --json deliveries --limit 50 2>/dev/null |
    sed -n 's/.*"requestId":"\([^"]*\)".*/\1/p' | sort -u
}

# What may stand at the cursor, one word a line; "FILES" for file names.
_twofactor_candidates() {
  local kind key
  _twofactor_locate
  if [[ -n $_tf_opt ]]; then
    for key in "$_tf_path $_tf_opt" "twofactor $_tf_opt"; do
      if [[ -n ${_tf_choices[$key]-} ]]; then printf '%s\n' ${_tf_choices[$key]}; return; fi
      kind="${_tf_kinds[$key]-}"
      [[ -n $kind ]] && break
    done
  elif [[ $_tf_cur == -* ]]; then
    printf '%s\n' ${_tf_opts[$_tf_path]} ${_tf_opts[twofactor]}
    return
  else
    if [[ -n ${_tf_subs[$_tf_path]} ]]; then printf '%s\n' ${_tf_subs[$_tf_path]}; return; fi
    key="$_tf_path #$_tf_npos"
    kind="${_tf_kinds[$key]-}"
  fi
  case $kind in
    app) _twofactor_apps ;;
    request) _twofactor_requests ;;
    file) echo FILES ;;
  esac
}
'''

BASH = r'''
_twofactor() {
  local _tf_words=("${COMP_WORDS[@]}") _tf_cword=$COMP_CWORD _tf_cur="${COMP_WORDS[COMP_CWORD]}"
  local _tf_path _tf_npos _tf_socket _tf_opt
  local candidates
  candidates="$(_twofactor_candidates)"
  if [[ $candidates == FILES ]]; then
    COMPREPLY=($(compgen -f -- "$_tf_cur"))
  else
    COMPREPLY=($(compgen -W "$candidates" -- "$_tf_cur"))
  fi
}
complete -F _twofactor twofactor
'''

ZSH = r'''
_twofactor() {
  # Words counted from 0 and split on expansion, as in bash.
  setopt localoptions ksharrays shwordsplit
  local -a _tf_words=("${words[@]}")
  local _tf_cword=$(( CURRENT - 1 )) _tf_cur="${words[CURRENT-1]}"
  local _tf_path _tf_npos _tf_opt
  local -a _tf_socket candidates
  candidates=("${(@f)$(_twofactor_candidates)}")
  if [[ ${candidates[0]} == FILES ]]; then
    _files
  else
    compadd -a candidates
  fi
}
'''


def main():
    cli, shell, output = sys.argv[1:4]
    root = json.loads(subprocess.run([cli, "--list-commands"], check=True, capture_output=True, text=True).stdout)
    subs, opts, valued, choices, kinds = tables(root)
    head = ("#compdef twofactor\n" if shell == "zsh" else "") + \
        "# twofactor %s completion, generated from `twofactor --list-commands` by cli/completions.py.\n" % shell
    body = "\n".join(assoc(n, t, shell) for n, t in [("_tf_subs", subs), ("_tf_opts", opts), ("_tf_valued", valued),
                                                       ("_tf_choices", choices), ("_tf_kinds", kinds)])
    tail = BASH if shell == "bash" else ZSH + '\n_twofactor "$@"\n'
    with open(output, "w") as f:
        f.write(head + body + "\n" + WALK + tail)


if __name__ == "__main__":
    main()
