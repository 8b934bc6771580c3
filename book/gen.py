#!/usr/bin/env python3
"""Build the book's pages from book/templates, running every example through
the real toolgate binary and pasting what it prints.

    python3 book/gen.py           # rewrite book/src from the templates
    python3 book/gen.py --run-only DIR   # only run the examples of the templates in DIR
    python3 book/gen.py --check   # fail (exit 1, with a diff) if book/src is stale

In a template, a fenced block can carry attributes:
  ```yaml file={work}/x/policy.yaml        write the block to that file (and show it)
  ```yaml file=... hidden                  write it without showing it
  ```run cwd={work}/x                      run each `$ command` line, paste the output
  ```setup cwd=...                         run the commands, show nothing
  ```pest include={repo}/grammar/x.pest   show a repository file
{work} is a fresh scratch directory, {repo} the repository root, {bin} the
directory of the toolgate binary (where cargo also puts `examples/`). Commands see
`toolgate` as the binary named by $TOOLGATE_BIN (default target/debug/toolgate)
and run with NO_COLOR=1 and `pipefail`; `toolgate` is on PATH (a link to that
binary), so `toolgate serve ... & echo $! > server.pid` records the server's own pid;
so are the MCP servers that tests/mcp/install puts in tests/mcp/node_modules/.bin
(`mcp-server-everything`, `mcp-server-filesystem`, `mcp-server-memory`).

Every command must exit 0, or the status it ends with (`$ cmd  # exit 1`; the
marker is not shown): an example whose command fails unexpectedly fails the
generation, so the book never shows an error as if it were the example.

Parts of the output are random or depend on the hour, and are masked as they
are pasted: the keyed tag of a decision id (`"decision_id":"1.9f2c..."` becomes
`"1.…"`), approval ids (`apr_…`) and times to the second
(`YYYY-MM-DDTHH:MM:SSZ`), and the time a log line starts with.

Approvers are Unix users, so an example needs the user who runs it: in a file
block, {user} is that user's name, shown as `alice`; in output, that user as
toolgate names them (`root (uid 0)`) is shown as `alice (uid 1000)`.
"""
import difflib, os, pwd, re, shlex, subprocess, sys, tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("TOOLGATE_BIN", os.path.join(REPO, "target", "debug", "toolgate"))
FENCE = re.compile(r"^```(\S*)(.*)$")


def attrs(text, places):
    out = {}
    for part in shlex.split(text):
        key, _, value = part.partition("=")
        out[key] = value.format(**places) if value else True
    return out


FAILURES = []
EXPECTED = re.compile(r"\s+# exit (\d+)$")


def expected_status(command):
    """The command without its `# exit N` marker, and the status it must end with."""
    m = EXPECTED.search(command)
    return (command[: m.start()], int(m.group(1))) if m else (command, 0)


USER = pwd.getpwuid(os.getuid()).pw_name
USER_AS_NAMED = re.compile(re.escape(USER) + r" \(uid " + str(os.getuid()) + r"\)")
DECISION_TAG = re.compile(r'("decision_id":\s*"[0-9a-f]+\.)[0-9a-f]{16}"')
APPROVAL_ID = re.compile(r"\bapr_[0-9a-f]{32}\b")
SECONDS_TIME = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", re.M)


def run_block(cwd, commands, places):
    sep = "@@SEP-8f3a@@"
    status = "@@STATUS-8f3a@@"
    script = [
        f"cd {shlex.quote(cwd)}",
        "set -o pipefail",
        "export NO_COLOR=1",
        f"export TOOLGATE={shlex.quote(BIN)}",
        f"export PATH={shlex.quote(places['path'])}:$PATH",
    ]
    for i, command in enumerate(commands):
        script.append(f'echo "{sep}{i}"')
        script.append("{ " + substitute(expected_status(command)[0], places) + "\n} 2>&1")
        script.append(f'echo "{status}$?"')
    result = subprocess.run(["bash", "-c", "\n".join(script)], capture_output=True, text=True)
    if result.stderr:
        sys.exit(f"stderr outside commands in {cwd}: {result.stderr}")
    outputs = []
    for command, chunk in zip(commands, re.split(re.escape(sep) + r"\d+\n", result.stdout)[1:]):
        m = re.search(re.escape(status) + r"(\d+)\n?$", chunk)
        got = int(m.group(1)) if m else -1
        output = chunk[: m.start()] if m else chunk
        shown, wanted = expected_status(command)
        if got != wanted:
            FAILURES.append(f"in {cwd}:\n$ {shown}\nexited {got}, not {wanted}; it printed:\n{output}")
        output = DECISION_TAG.sub(r'\1…"', output)
        output = APPROVAL_ID.sub("apr_…", output)
        output = SECONDS_TIME.sub("YYYY-MM-DDTHH:MM:SSZ", output)
        output = LOG_TIME.sub("YYYY-MM-DDTHH:MM:SS.ssssssZ", output)
        outputs.append(USER_AS_NAMED.sub("alice (uid 1000)", output))
    return outputs


def substitute(text, places, shown=False):
    """Fills {work}, {repo} and {bin} in a command (shown: as a reader would type it)."""
    for key in ("work", "repo", "bin"):
        value = {"work": ".", "repo": ".", "bin": "target/debug"}[key] if shown else places[key]
        text = text.replace("{" + key + "}", value)
    return text


def expand(src, places):
    lines, out, i = src.split("\n"), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(1):
            out.append(lines[i])
            i += 1
            continue
        lang, a = m.group(1), attrs(m.group(2), places)
        j = i + 1
        while lines[j] != "```":
            j += 1
        body, i = lines[i + 1:j], j + 1
        if "include" in a:
            with open(a["include"]) as f:
                body = f.read().rstrip("\n").split("\n")
            out += [f"```{lang}", *body, "```"]
        elif "file" in a:
            os.makedirs(os.path.dirname(a["file"]), exist_ok=True)
            with open(a["file"], "w") as f:
                f.write("\n".join(body).replace("{user}", USER) + "\n")
            if "hidden" not in a:
                out += [f"```{lang}", *[line.replace("{user}", "alice") for line in body], "```"]
        elif lang in ("run", "setup"):
            os.makedirs(a.get("cwd", places["work"]), exist_ok=True)
            commands = [line[2:] for line in body if line.startswith("$ ")]
            results = run_block(a.get("cwd", places["work"]), commands, places)
            if lang == "run":
                out.append("```" + a.get("lang", "console"))
                for command, result in zip(commands, results):
                    out.append("$ " + substitute(expected_status(command)[0], places, shown=True))
                    if result.rstrip("\n"):
                        out.append(result.rstrip("\n"))
                out.append("```")
        else:
            out += [f"```{lang}{m.group(2)}", *body, "```"]
    return "\n".join(out)


def build(templates, work, tool_dir):
    pages = {}
    for root, _, files in os.walk(templates):
        for name in sorted(files):
            if name.endswith(".md"):
                path = os.path.join(root, name)
                with open(path) as f:
                    places = {"work": work, "repo": REPO, "bin": os.path.dirname(os.path.abspath(BIN)), "path": tool_dir}
                    pages[os.path.relpath(path, templates)] = expand(f.read(), places)
    return pages


def main():
    args = sys.argv[1:]
    check = "--check" in args
    run_only = args[args.index("--run-only") + 1] if "--run-only" in args else None
    templates = run_only or os.path.join(REPO, "book", "templates")
    with tempfile.TemporaryDirectory(prefix="toolgate-book-") as work:
        # `toolgate` on PATH, so scripts the examples run find it too.
        path = os.path.join(work, ".bin")
        os.makedirs(path)
        os.symlink(os.path.abspath(BIN), os.path.join(path, "toolgate"))
        # The MCP servers tests/mcp/install put in place, as `npm install -g` would.
        servers = os.path.join(REPO, "tests", "mcp", "node_modules", ".bin")
        for name in sorted(os.listdir(servers)) if os.path.isdir(servers) else []:
            if name.startswith("mcp-server-"):
                os.symlink(os.path.join(servers, name), os.path.join(path, name))
        pages = build(templates, work, path)
    if FAILURES:
        sys.exit("an example's command failed unexpectedly:\n\n" + "\n".join(FAILURES))
    if run_only:
        return
    src = os.path.join(REPO, "book", "src")
    stale = []
    for rel, text in sorted(pages.items()):
        path = os.path.join(src, rel)
        current = open(path).read() if os.path.exists(path) else ""
        if current == text:
            continue
        if check:
            stale.append(rel)
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True), f"book/src/{rel}", "generated"))
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
            print("wrote", path)
    if stale:
        sys.exit(f"book/src is stale ({', '.join(stale)}); run: python3 book/gen.py")


if __name__ == "__main__":
    main()
