#!/usr/bin/env python3
"""Writes a man page from a program's own argument parser.

`PROGRAM --experimental-dump-help` (swift-argument-parser) describes every
subcommand, argument and option; this turns that into roff, so the pages
say what the parser accepts and cannot drift from it.

Usage: manpage.py PROGRAM SECTION OUT_FILE
"""
import datetime
import json
import os
import subprocess
import sys

program, section, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
info = json.loads(subprocess.run([program, "--experimental-dump-help"], check=True,
                                 capture_output=True, text=True).stdout)["command"]
name = os.path.basename(program)


def esc(text):
    """Roff-safe text: backslashes, and a leading dot or quote on a line."""
    text = (text or "").replace("\\", "\\e")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.split("\n"))


def names(arg):
    if arg["kind"] == "positional":
        return f"\\fI{esc(arg['valueName'])}\\fR"
    dashes = {"short": "\\-", "long": "\\-\\-", "longWithSingleDash": "\\-"}
    text = ", ".join(f"\\fB{dashes.get(n['kind'], '')}{esc(n['name'])}\\fR" for n in arg.get("names", []))
    if arg["kind"] == "option":
        text += f" \\fI{esc(arg['valueName'])}\\fR"
    return text


def visible(args):
    return [a for a in args or [] if a.get("shouldDisplay", True) and not
            (a["kind"] == "flag" and any(n["name"] in ("help", "version") for n in a.get("names", [])))]


def synopsis(cmd, path):
    parts = [f"\\fB{esc(' '.join(path))}\\fR"]
    for a in visible(cmd.get("arguments")):
        item = names(a) + (" ..." if a.get("isRepeating") else "")
        parts.append(f"[{item}]" if a.get("isOptional") else item)
    return " ".join(parts)


def arguments(cmd):
    lines = []
    for a in visible(cmd.get("arguments")):
        lines += [".TP", names(a), esc(a.get("abstract") or "")]
        if a.get("discussion"):
            lines.append(esc(a["discussion"] if isinstance(a["discussion"], str) else ""))
        if a.get("defaultValue"):
            lines.append(f"(default: {esc(a['defaultValue'])})")
    return lines


date = datetime.date.today().strftime("%B %Y")
version = subprocess.run([program, "--version"], capture_output=True, text=True).stdout.strip()
page = [f'.TH {name.upper()} {section} "{date}" "jobfetch {esc(version)}" "jobfetch"',
        ".SH NAME", f"{esc(name)} \\- {esc(info.get('abstract', ''))}", ".SH SYNOPSIS"]
subs = [s for s in info.get("subcommands", []) if s.get("shouldDisplay", True) and s["commandName"] != "help"]
if subs:
    page += [f"\\fB{esc(name)}\\fR \\fIsubcommand\\fR [\\fB\\-\\-config\\fR \\fIpath\\fR] ..."]
else:
    page += [synopsis(info, [name])]
page += [".SH DESCRIPTION", esc(info.get("abstract", ""))]
if info.get("discussion"):
    page += [".PP", esc(info["discussion"])]
if visible(info.get("arguments")):
    page += [".SH OPTIONS"] + arguments(info)
if subs:
    page.append(".SH COMMANDS")
    for s in subs:
        page += [".SS " + esc(s["commandName"]), synopsis(s, [name, s["commandName"]]), ".PP", esc(s.get("abstract", ""))]
        if s.get("discussion"):
            page += [".PP", esc(s["discussion"])]
        page += [".RS"] + arguments(s) + [".RE"]
page += [".SH FILES", "/etc/jobfetchd/daemon.conf (or \\fB$JOBFETCH_CONFIG\\fR)",
         ".SH SEE ALSO",
         "\\fBjobfetchd\\fR(8), \\fBjobfetchctl\\fR(1); /usr/share/doc/jobfetch/README.md"]
with open(out_path, "w") as f:
    f.write("\n".join(page) + "\n")
