#!/usr/bin/env python3
"""Replaces one results section of BENCHMARKS.md: the text between `<!-- NAME:start -->`
and `<!-- NAME:end -->`.

usage: write_section.py NAME REPORT
"""
import sys

name, report = sys.argv[1], sys.argv[2]
start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
text = open("BENCHMARKS.md").read()
head, rest = text.split(start, 1)
_, tail = rest.split(end, 1)
open("BENCHMARKS.md", "w").write(f"{head}{start}\n{report}\n{end}{tail}")
