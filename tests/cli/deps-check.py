#!/usr/bin/env python3
"""deps-check: every command the project's scripts call is one scripts/deps installs.

Usage: deps-check.py SOURCE_ROOT

Reads the table of `scripts/deps --list` (group, Debian package, what the project
uses from it) and every script the README's commands and the benchmarks run:
scripts/, tests/ and bench/ (shell, parsed by shfmt; Python; the shell commands
the C tests give system()) and the meson.build files. It fails, naming the file
and line, when

- a script calls a command that no row lists, that is not a shell builtin or
  keyword, not a function of the scripts, and not checked for first in the same
  file (`command -v CMD`, `need CMD`, `type CMD`, `hash CMD`);
- Python code imports a module outside the standard library that no row lists
  as py:NAME, or runs a command in a way this check cannot read;
- meson.build asks for a pkg-config module (pc:NAME), a library (lib:NAME) or a
  program no row lists;
- a row's package is installed and does not ship what the row says (dpkg -L:
  a command in a bin directory, directly or through an alternative, NAME.pc, libNAME.so).

Commands are found where the shell runs them: the first word of a simple
command, after wrappers that run their arguments (env, timeout, xargs,
find -exec, sh -c STRING, ...), and the arguments of the scripts' own functions
that run "$@" (after their shifts) or hand a parameter to a shell as a string.
"""
import ast
import json
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
DYN = "__dyn__"          # stands for an expansion inside a string parsed as shell
errors = []
notes = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


# ---------------------------------------------------------------- the table
def read_table():
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts/deps"), "--list"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"deps-check: scripts/deps --list failed: {out.stderr}")
    rows = []
    for line in out.stdout.splitlines():
        f = line.split()
        if len(f) >= 2:
            rows.append((f[0], f[1], f[2:]))
    return rows


# ---------------------------------------------------------------- shell
def shfmt_parse(text, where):
    r = subprocess.run(["shfmt", "--to-json"], input=text, capture_output=True, text=True)
    if r.returncode != 0:
        err(where, f"shfmt cannot parse it: {r.stderr.strip()}")
        return None
    return json.loads(r.stdout)


def word_lit(w):
    """The word's value when it has no expansion, else None."""
    out = []
    for p in w.get("Parts", []):
        t = p.get("Type")
        if t == "Lit":
            out.append(re.sub(r"\\(.)", r"\1", p["Value"]))
        elif t == "SglQuoted":
            out.append(p["Value"])
        elif t == "DblQuoted":
            for q in p.get("Parts", []):
                if q.get("Type") != "Lit":
                    return None
                out.append(re.sub(r'\\([\\"$`])', r"\1", q["Value"]))
        else:
            return None
    return "".join(out)


def word_text(w):
    """The word as a string, each expansion replaced by DYN (to parse it as shell)."""
    out = []
    for p in w.get("Parts", []):
        t = p.get("Type")
        if t == "Lit":
            out.append(re.sub(r"\\(.)", r"\1", p["Value"]))
        elif t == "SglQuoted":
            out.append(p["Value"])
        elif t == "DblQuoted":
            for q in p.get("Parts", []):
                if q.get("Type") == "Lit":
                    out.append(re.sub(r'\\([\\"$`])', r"\1", q["Value"]))
                else:
                    out.append(DYN)
        else:
            out.append(DYN)
    return "".join(out)


def param_of(w):
    """NAME when the word is exactly $NAME or "$NAME" (or ${NAME}), else None."""
    parts = w.get("Parts", [])
    if len(parts) == 1 and parts[0].get("Type") == "DblQuoted":
        parts = parts[0].get("Parts", [])
    if len(parts) == 1 and parts[0].get("Type") == "ParamExp":
        p = parts[0]
        if not any(k in p for k in ("Exp", "Repl", "Slice", "Index", "Length", "Excl")):
            return p["Param"]["Value"]
    return None


def is_all_args(w):
    """"$@" or "${@:N}"."""
    parts = w.get("Parts", [])
    if len(parts) == 1 and parts[0].get("Type") == "DblQuoted":
        parts = parts[0].get("Parts", [])
    return len(parts) == 1 and parts[0].get("Type") == "ParamExp" and \
        parts[0]["Param"]["Value"] == "@"


def unquoted_param(w):
    parts = w.get("Parts", [])
    return len(parts) == 1 and parts[0].get("Type") == "ParamExp"


def walk(n, fn):
    if isinstance(n, dict):
        if fn(n) is False:
            return
        for v in n.values():
            walk(v, fn)
    elif isinstance(n, list):
        for v in n:
            walk(v, fn)


# Options that take a separate value, per wrapper that runs its arguments.
OPT_ARGS = {
    "env": {"-u", "--unset", "-C", "--chdir", "-S", "--split-string"},
    "sudo": {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"},
    "timeout": {"-s", "--signal", "-k", "--kill-after"},
    "nice": {"-n", "--adjustment"},
    "ionice": {"-c", "--class", "-n", "--classdata", "-p", "-P", "-u"},
    "xargs": {"-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--arg-file", "--delimiter",
              "--max-args", "--max-procs", "--max-lines", "--max-chars"},
    "setpriv": {"--reuid", "--regid", "--groups", "--inh-caps", "--ambient-caps",
                "--bounding-set", "--securebits", "--pdeathsig", "--selinux-label",
                "--apparmor-profile", "--ruid", "--euid", "--rgid", "--egid"},
    "unshare": {"--map-user", "--map-group", "--setuid", "--setgid", "-S", "-G", "--wd", "-w",
                "--root", "-R", "--propagation"},
    "nsenter": {"-t", "--target", "-S", "--setuid", "-G", "--setgid", "--wd", "-w",
                "--root", "-r"},
    "stdbuf": {"-i", "-o", "-e"},
    "taskset": set(),
    "flock": {"-w", "--timeout", "-E", "--conflict-exit-code"},
    "setsid": set(), "nohup": set(), "exec": {"-a"}, "builtin": set(), "command": set(),
    "chrt": set(), "strace": {"-o", "-e", "-p", "-s", "-u"}, "watch": {"-n", "-d"},
}


class Shell:
    """Finds the commands and guards in one shell file (or string)."""

    def __init__(self, checker, where):
        self.c = checker
        self.where = where            # file, for messages
        self.guards = set()
        self.calls = []               # (command, line)
        self.pyblocks = []            # (python text, line)
        self.at = None                # the line of the string being parsed, if any

    # -------- entry points
    def run_file(self, text):
        tree = shfmt_parse(text, self.where)
        if tree is not None:
            self.visit(tree, {})

    def run_string(self, text, line, env):
        if DYN in text and text.strip() == DYN:
            return
        tree = shfmt_parse(text, f"{self.where}:{line}")
        if tree is None:
            return
        saved, self.at = self.at, line
        self.visit(tree, env)
        self.at = saved

    def line(self, n):
        return self.at if self.at is not None else n["Pos"]["Line"]

    # -------- the walk
    def visit(self, tree, env):
        def fn(n):
            t = n.get("Type")
            if t == "ForClause" and n["Loop"].get("Type") == "WordIter":
                items = [word_lit(w) for w in n["Loop"].get("Items", [])]
                env2 = dict(env)
                env2[n["Loop"]["Name"]["Value"]] = [i for i in items if i is not None]
                for w in n["Loop"].get("Items", []):
                    self.visit(w, env)
                self.visit(n.get("Do", []), env2)
                return False
            if t == "FuncDecl":
                self.visit(n["Body"], env)
                return False
            if "Cmd" in n and isinstance(n["Cmd"], dict) and n["Cmd"].get("Type") == "CallExpr":
                self.stmt(n, env)
                self.visit(n.get("Redirs", []), env)
                return False
            return None
        walk(tree, fn)

    def stmt(self, s, env):
        call = s["Cmd"]
        args = call.get("Args", [])
        for a in call.get("Assigns", []):
            self.visit(a, env)
        for a in args:
            self.visit(a, env)          # command substitutions in any argument
        if not args:
            return
        line = self.line(call)
        cmds = self.argv(args, env, line)
        # Python given as a here-document
        if any(c in ("python3", "python") for c in cmds):
            for r in s.get("Redirs", []) or []:
                if r.get("Hdoc"):
                    self.pyblocks.append((word_text(r["Hdoc"]), line))

    def guard(self, words, env):
        for w in words:
            v = word_lit(w)
            if v is not None:
                if not v.startswith("-"):
                    self.guards.add(v)
            else:
                name = param_of(w)
                if name in env:
                    self.guards.update(env[name])

    def argv(self, args, env, line):
        """Record the command(s) run by this argv; return their names."""
        found = []
        i = 0
        while i < len(args):
            w = args[i]
            v = word_lit(w)
            if v is None:
                # "$CAIRN" ... is the project's command; an unquoted $SUDO may be
                # empty or a wrapper: look at the word after it too.
                if unquoted_param(w) and i + 1 < len(args):
                    i += 1
                    continue
                return found
            if "/" in v:
                if not v.startswith(("/usr/", "/bin/", "/sbin/")):
                    return found   # the project's own scripts and binaries, by path
                v = os.path.basename(v)
            found.append(v)
            self.calls.append((v, line))
            rest = args[i + 1:]
            lits = [word_lit(a) for a in rest]
            if v in ("command", "type", "hash", "need", "which"):
                if v == "command" and lits and lits[0] in ("-v", "-V"):
                    self.guard(rest[1:], env)
                    return found
                if v != "command":
                    self.guard(rest, env)
                    return found
            if v in ("sh", "bash", "dash"):
                for j, a in enumerate(lits):
                    if a is not None and a.startswith("-") and "c" in a and not a.startswith("--"):
                        if j + 1 < len(rest):
                            self.run_string(word_text(rest[j + 1]), line, env)
                        break
                return found
            if v in ("eval", "trap") and rest:
                if v == "trap":
                    # trap - SIG resets, trap -p/-l print: no command; trap -- CMD SIG
                    if lits[0] == "--":
                        rest = rest[1:2]
                    elif lits[0] is not None and lits[0].startswith("-"):
                        return found
                    else:
                        rest = rest[:1]
                    if not rest:
                        return found
                self.run_string(" ".join(word_text(a) for a in rest), line, env)
                return found
            if v in ("su", "script") or (v == "flock" and ("-c" in lits or "--command" in lits)):
                # a command given as a string: su -c, script -c (or -qec), flock -c
                for j, a in enumerate(lits):
                    if a in ("-c", "--command") or (v == "script" and re.fullmatch(r"-[a-z]*c", a or "")):
                        if j + 1 < len(rest):
                            self.run_string(word_text(rest[j + 1]), line, env)
                        break
                return found
            if v == "find":
                for j, a in enumerate(lits):
                    if a in ("-exec", "-execdir", "-ok", "-okdir") and j + 1 < len(rest):
                        found += self.argv(rest[j + 1:], env, line)
                return found
            if v == "hyperfine":
                j = 0
                while j < len(rest):
                    a = lits[j]
                    if a in ("-p", "--prepare", "-s", "--setup", "-c", "--cleanup", "--conclude"):
                        if j + 1 < len(rest):
                            self.run_string(word_text(rest[j + 1]), line, env)
                        j += 2
                    elif a in ("-S", "--shell"):
                        if j + 1 < len(rest) and lits[j + 1] not in (None, "none"):
                            self.calls.append((lits[j + 1], line))
                        j += 2
                    elif a is not None and a.startswith("-"):
                        j += 1 if "=" in a or a in ("-i", "--ignore-failure", "-N", "-u") else 2
                    else:
                        self.run_string(word_text(rest[j]), line, env)
                        j += 1
                return found
            if v in ("chroot",):
                return found       # what it runs comes from the other root
            if v == "timeout" or v in OPT_ARGS:
                # skip options (and their values), then the command
                j = 0
                takes = OPT_ARGS.get(v, set())
                while j < len(lits):
                    a = lits[j]
                    if a is None:
                        break
                    if v == "env" and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", a):
                        j += 1
                        continue
                    if a == "--":
                        j += 1
                        break
                    if a.startswith("-") and a != "-":
                        j += 2 if a in takes else 1
                        continue
                    break
                if v == "timeout":
                    j += 1   # the duration
                elif v == "taskset":
                    j += 1   # the mask
                elif v == "flock":
                    j += 1   # the lock file
                if v in ("command", "builtin", "exec") or j < len(rest):
                    args, i = rest, j
                    continue
                return found
            # the scripts' own functions that run their arguments
            r = self.c.runners.get(v)
            if r:
                kind, k = r
                if kind == "argv" and k < len(rest):
                    args, i = rest, k
                    continue
                if kind == "str" and 0 <= k - 1 < len(rest):
                    self.run_string(word_text(rest[k - 1]), line, env)
                return found
            if v in ("python3", "python"):
                for j, a in enumerate(lits):
                    if a == "-c" and j + 1 < len(rest):
                        self.pyblocks.append((word_text(rest[j + 1]), line))
                        break
                    if a is None or not a.startswith("-"):
                        break
            return found
        return found


# ---------------------------------------------------------------- Python
def py_check(text, where, checker):
    text = text.replace(DYN, "0")
    try:
        tree = ast.parse(text)
    except SyntaxError:
        # a snippet with an expansion where code goes: read its imports by pattern
        for m in re.finditer(r"(?:^|[;\n])\s*(?:import|from)\s+([A-Za-z_]\w*)", text):
            if m.group(1) not in sys.stdlib_module_names:
                checker.use(f"py:{m.group(1)}", where, set())
        if re.search(r"\bsubprocess\b|\bos\.(system|popen|exec|spawn)", text):
            err(where, "Python that runs a command and does not parse without its expansions")
        return
    for n in ast.walk(tree):
        mods = []
        if isinstance(n, ast.Import):
            mods = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
            mods = [n.module]
        for m in mods:
            top = m.split(".")[0]
            if top not in sys.stdlib_module_names:
                checker.use(f"py:{top}", where, set())
        if isinstance(n, ast.Call):
            f = n.func
            name = ""
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                name = f"{f.value.id}.{f.attr}"
            if name in ("os.system", "os.popen") or name.startswith(("subprocess.", "os.exec", "os.spawn")):
                if name in ("subprocess.PIPE", "subprocess.DEVNULL"):
                    continue
                a = n.args[0] if n.args else None
                while isinstance(a, ast.BinOp):       # ["cmd", ...] + more
                    a = a.left
                if isinstance(a, (ast.List, ast.Tuple)) and a.elts and \
                        isinstance(a.elts[0], ast.Name) and a.elts[0].id == "CAIRN":
                    continue  # [CAIRN, ...]: the project's command, from $CAIRN
                if isinstance(a, (ast.List, ast.Tuple)) and a.elts and \
                        isinstance(a.elts[0], ast.Constant) and isinstance(a.elts[0].value, str):
                    checker.use(a.elts[0].value, where, set())
                elif isinstance(a, ast.Constant) and isinstance(a.value, str):
                    sh = Shell(checker, where)
                    sh.run_string(a.value, getattr(n, "lineno", 1), {})
                    checker.take(sh)
                else:
                    err(where, f"{name}() with a command this check cannot read: "
                               "give it a literal list or string")


# ---------------------------------------------------------------- C (the tests' system())
C_STR = r'"(?:[^"\\\n]|\\.)*"'


def c_unescape(s):
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), s)


def c_calls(body, names):
    """(name, [arg texts]) for each call of one of names in body."""
    out = []
    for m in re.finditer(r"\b(" + "|".join(map(re.escape, names)) + r")\s*\(", body):
        i, depth, args, cur = m.end(), 1, [], ""
        while i < len(body) and depth:
            ch = body[i]
            if ch == '"':
                s = re.match(C_STR, body[i:])
                cur += s.group(0)
                i += len(s.group(0))
                continue
            if ch == "'":
                s = re.match(r"'(?:[^'\\]|\\.)*'", body[i:])
                cur += s.group(0)
                i += len(s.group(0))
                continue
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
                if depth == 0:
                    break
            if ch == "," and depth == 1:
                args.append(cur)
                cur = ""
            else:
                cur += ch
            i += 1
        args.append(cur)
        out.append((m.group(1), args, body.count("\n", 0, m.start())))
    return out


def c_strings(arg):
    """The C string literal(s) of an argument (adjacent ones joined), or None."""
    a = arg.strip()
    if not re.fullmatch(r"(?:\s*" + C_STR + r")+", a):
        return None
    return "".join(c_unescape(x[1:-1]) for x in re.findall(C_STR, a))


def c_check(text, where, checker):
    """The shell commands the C tests run: literal strings given to system(), to
    the format of an asprintf() or snprintf() in a function that calls system(),
    and to the parameters such functions put where the shell runs a command."""
    funcs = []
    for m in re.finditer(r"^[A-Za-z_][\w \t\*]*?\b(\w+)\s*\(([^;{)]*)\)\s*\{", text, re.M):
        end = text.find("\n}", m.end())
        params = [re.findall(r"\w+", p)[-1] if re.findall(r"\w+", p) else ""
                  for p in m.group(2).split(",")]
        funcs.append((m.group(1), params, text[m.start():end if end > 0 else len(text)], m.start()))
    runners = {}      # function -> indices of its parameters run as shell commands

    def shell(s, at, record):
        sh = Shell(checker, at)
        sh.run_string(s, 1, {})
        if record:
            for cmd, _ in sh.calls:
                if not re.fullmatch(r"__c\d+__", cmd):
                    checker.use(cmd, at, sh.guards)
        return sh

    for final in (False, True):       # twice: a runner may be found after its callers
        for name, params, body, start in funcs:
            has_system = re.search(r"\bsystem\s*\(", body) is not None
            for callee, args, nl in c_calls(body, ["system", "asprintf", "snprintf"] + sorted(runners)):
                at = f"{where}:{text.count(chr(10), 0, start) + nl + 1}"
                if callee == "system":
                    s = c_strings(args[0])
                    if s is not None:
                        shell(s.replace("%%", "%"), at, final)
                    elif args[0].strip() in params:
                        runners.setdefault(name, set()).add(params.index(args[0].strip()))
                    continue
                if callee in ("asprintf", "snprintf"):
                    k = 1 if callee == "asprintf" else 2
                    fmt = c_strings(args[k]) if has_system and len(args) > k else None
                    if fmt is None:
                        continue
                    n = iter(range(1000))
                    fmt = re.sub(r"%(%|[-#0 +']*\d*(?:\.\d+)?(?:hh|h|ll|l|z|j|t)?[diouxXscpfFeEgG])",
                                 lambda m: "%" if m.group(1) == "%" else f"__c{next(n)}__", fmt)
                    sh = shell(fmt, at, final)
                    for cmd, _ in sh.calls:
                        c = re.fullmatch(r"__c(\d+)__", cmd)
                        if c and k + 1 + int(c.group(1)) < len(args):
                            a = args[k + 1 + int(c.group(1))].strip()
                            if a in params:
                                runners.setdefault(name, set()).add(params.index(a))
                    continue
                for i in runners.get(callee, ()):
                    if i < len(args):
                        s = c_strings(args[i])
                        if s is not None:
                            shell(s, at, final)
                        elif args[i].strip() in params:
                            runners.setdefault(name, set()).add(params.index(args[i].strip()))


# ---------------------------------------------------------------- the checker
class Checker:
    def __init__(self):
        self.rows = read_table()
        self.listed = {}
        for group, pkg, uses in self.rows:
            for u in uses:
                if u in self.listed:
                    err("scripts/deps", f"{u} is listed under {self.listed[u]} and {pkg}")
                self.listed[u] = pkg
        bi = subprocess.run(["bash", "-c", "compgen -b; compgen -k"], capture_output=True, text=True)
        self.builtins = set(bi.stdout.split())
        self.functions = set()
        self.runners = {}
        self.used = {}     # what -> first place

    def use(self, what, where, guards):
        self.used.setdefault(what, where)
        if what in self.listed or what in guards:
            return
        if not what.startswith(("py:", "pc:", "lib:")):
            if what in self.builtins or what in self.functions or DYN in what:
                return
            if not re.fullmatch(r"[A-Za-z0-9_.+-]+", what) or re.fullmatch(r"[A-Z][A-Z0-9_]*", what):
                return     # not a command name (a placeholder such as CAIRN, an assignment)
            err(where, f"calls {what}, which scripts/deps does not list: add it to the row of "
                       f"the Debian package that has it (dpkg -S), or check for it first "
                       f"(tests: need {what}, which skips)")
        else:
            err(where, f"needs {what}, which scripts/deps does not list")

    def take(self, sh):
        for cmd, line in sh.calls:
            self.use(cmd, f"{sh.where}:{line}", sh.guards)
        for text, line in sh.pyblocks:
            py_check(text, f"{sh.where}:{line}", self)

    # functions of every script: names, and those that run their arguments
    def learn_functions(self, trees):
        for tree in trees:
            def fn(n):
                if n.get("Type") != "FuncDecl":
                    return None
                name = n["Name"]["Value"]
                self.functions.add(name)
                self.learn_runner(name, n["Body"])
                return None
            walk(tree, fn)

    def learn_runner(self, name, body):
        shifts = 0
        pos = {}          # variable -> positional index it was set from
        found = None

        def fn(n):
            nonlocal shifts, found
            if found:
                return False
            t = n.get("Type")
            if t == "FuncDecl":
                return False
            if t == "DeclClause" or t == "CallExpr":
                for a in n.get("Assigns", []) + (n.get("Args", []) if t == "DeclClause" else []):
                    if "Name" in a and a.get("Value"):
                        p = param_of(a["Value"])
                        if p and p.isdigit():
                            pos[a["Name"]["Value"]] = int(p)
            if t == "CallExpr" and n.get("Args"):
                args = n["Args"]
                v = word_lit(args[0])
                if v == "shift":
                    k = word_lit(args[1]) if len(args) > 1 else "1"
                    shifts += int(k) if k and k.isdigit() else 1
                elif is_all_args(args[0]):
                    found = ("argv", shifts)
                elif v in ("hyperfine", "eval", "sh", "bash"):
                    for a in args[1:]:
                        p = param_of(a)
                        if p and p.isdigit():
                            found = ("str", int(p))
                        elif p in pos:
                            found = ("str", pos[p])
            return None
        walk(body, fn)
        if found:
            self.runners[name] = found


def files():
    out = []
    for top in ("scripts", "tests", "bench", ".ci"):
        for d, dirs, fs in os.walk(os.path.join(ROOT, top)):
            dirs[:] = sorted(x for x in dirs if not x.startswith("."))
            for f in sorted(fs):
                out.append(os.path.join(d, f))
    return out


def kind(path):
    if path.endswith((".sh", ".bash")):
        return "sh"
    if path.endswith(".py"):
        return "py"
    if path.endswith((".c", ".h")):
        return "c"
    if os.path.basename(path) == "meson.build":
        return "meson"
    try:
        with open(path, "rb") as f:
            first = f.readline().decode(errors="replace")
    except OSError:
        return None
    if first.startswith("#!") and re.search(r"\b(ba)?sh\b", first):
        return "sh"
    if first.startswith("#!") and "python" in first:
        return "py"
    return None


def shebang(text, where, checker):
    first = text.split("\n", 1)[0]
    if first.startswith("#!"):
        words = first[2:].split()
        for w in words[:2]:
            if not w.startswith("-"):
                checker.use(os.path.basename(w), f"{where}:1", set())


def dpkg_verify(checker):
    if not shutil.which("dpkg-query"):
        notes.append("no dpkg-query here: the rows' packages are not verified")
        return
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    unpacked = os.environ.get("CAIRN_UNPACKED", "/var/cache/cairn/unpacked")
    for group, pkg, uses in checker.rows:
        if pkg.endswith("@unpacked"):
            # unpacked, not installed (scripts/deps says why): its files are its tree
            top = os.path.join(unpacked, pkg[:-len("@unpacked")])
            if not os.path.exists(os.path.join(top, ".unpacked")):
                notes.append(f"{pkg} is not unpacked here, so its row is not verified (scripts/deps unpacks it)")
                continue
            for u in uses:
                if not any(os.path.exists(os.path.join(top, d, u)) for d in ("usr/bin", "usr/sbin")):
                    err("scripts/deps", f"{pkg} does not ship {u} (in {top}): put it in the row "
                                        "of the package that does")
            continue
        st = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if "install ok installed" not in st.stdout:
            notes.append(f"{pkg} is not installed here, so its row is not verified (scripts/deps installs it)")
            continue
        # its files and those of the packages it depends on directly (python3's
        # interpreter is in python3-minimal, for instance)
        dep = subprocess.run(["dpkg-query", "-W", "-f=${Depends},${Pre-Depends}", pkg],
                             capture_output=True, text=True).stdout
        names = [pkg] + [re.split(r"[\s:(]", d.strip())[0] for d in re.split(r"[,|]", dep) if d.strip()]
        fl = subprocess.run(["dpkg", "-L"] + names, capture_output=True, text=True).stdout.split("\n")
        bins = {os.path.basename(f) for f in fl if re.search(r"/s?bin/[^/]+$", f)}
        for u in uses:
            ok = False
            if u.startswith("pc:"):
                ok = any(f.endswith(f"/pkgconfig/{u[3:]}.pc") for f in fl)
            elif u.startswith("lib:"):
                ok = any(os.path.basename(f) in (f"lib{u[4:]}.so", f"lib{u[4:]}.a") for f in fl)
            elif u.startswith("py:"):
                ok = any(re.search(rf"/(dist|site)-packages/{re.escape(u[3:])}(/|\.py$|\.cpython)", f)
                         for f in fl)
            elif u in bins:
                ok = True
            else:
                # through an alternative: a link whose chain reaches a file of the package
                p = shutil.which(u, path=path)
                seen = 0
                while p and not ok and seen < 10:
                    ok = os.path.basename(p) in bins and bool(re.search(r"/s?bin$", os.path.dirname(p)))
                    if not os.path.islink(p):
                        break
                    p = os.path.join(os.path.dirname(p), os.readlink(p))
                    seen += 1
            if not ok:
                err("scripts/deps", f"{pkg} does not ship {u} (dpkg -L {pkg}): put it in the row "
                                    "of the package that does (dpkg -S)")


def main():
    if not shutil.which("shfmt"):
        print("SKIP: shfmt is needed to read the scripts (scripts/deps installs it)")
        sys.exit(77)
    ck = Checker()
    paths = [(p, kind(p)) for p in files()]
    paths = [(p, k) for p, k in paths if k]
    texts = {p: open(p, encoding="utf-8", errors="replace").read() for p, _ in paths}
    rel = {p: os.path.relpath(p, ROOT) for p, _ in paths}
    trees = [shfmt_parse(texts[p], rel[p]) for p, k in paths if k == "sh"]
    ck.learn_functions([t for t in trees if t])
    for p, k in paths:
        where = rel[p]
        if k in ("sh", "py"):
            shebang(texts[p], where, ck)
        if k == "sh":
            sh = Shell(ck, where)
            sh.run_file(texts[p])
            ck.take(sh)
        elif k == "py":
            py_check(texts[p], where, ck)
        elif k == "c":
            c_check(texts[p], where, ck)
    # meson.build files: the project's own and the subdirectories'
    for d, dirs, fs in os.walk(ROOT):
        dirs[:] = [x for x in dirs if not x.startswith(".") and
                   not os.path.exists(os.path.join(d, x, "meson-private"))]
        if "meson.build" not in fs:
            continue
        p = os.path.join(d, "meson.build")
        where = os.path.relpath(p, ROOT)
        t = open(p).read()
        for m in re.finditer(r"\bdependency\(\s*'([^']+)'", t):
            if m.group(1) != "threads":
                ck.use(f"pc:{m.group(1)}", where, set())
        for m in re.finditer(r"\bfind_library\(\s*'([^']+)'", t):
            ck.use(f"lib:{m.group(1)}", where, set())
        for m in re.finditer(r"\bfind_program\(\s*'([^']+)'", t):
            ck.use(m.group(1), where, set())
        if re.search(r"\bproject\([^)]*'c'", t, re.S):
            ck.use("cc", where, set())
    dpkg_verify(ck)
    unused = sorted(u for u in ck.listed if u not in ck.used)
    if unused:
        notes.append("listed, called by no script yet: " + " ".join(unused))
    if os.environ.get("DEPS_CHECK_VERBOSE"):
        for u, w in sorted(ck.used.items()):
            print(f"uses {u} ({w})")
    for n in notes:
        print(f"note: {n}")
    for e in errors:
        print(f"FAIL: {e}")
    print(f"deps-check: {len(ck.used)} commands and modules used, {len(ck.listed)} listed, "
          f"{len(errors)} problems")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
