"""Write docs/cli.md: every command's flags, generated from the parsers themselves.

Run `python tools/gen_cli_docs.py` after changing a command's flags; the test suite
(tests/test_docs.py) fails while docs/cli.md is out of date.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def cli_reference() -> str:
    # A fixed width, so the text does not depend on the terminal that generated it.
    os.environ["COLUMNS"] = "100"
    from auditoryhum.cli import COMMANDS, build_parser

    parts = [
        "# Command reference",
        "",
        "Generated from the parsers by `tools/gen_cli_docs.py`; do not edit by hand. Every script is also a",
        "subcommand of `auditoryhum` with the same flags (`auditoryhum <subcommand> --help`).",
        "",
    ]
    for command in COMMANDS:
        title = f"`{command.script}` (`auditoryhum {command.name}`)" if command.script else f"`auditoryhum {command.name}`"
        parts += [f"## {title}", "", command.summary[0].upper() + command.summary[1:] + ".", "", "```text",
                  build_parser(command).format_help().rstrip(), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    with open(os.path.join(ROOT, "docs", "cli.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write(cli_reference())
    print("wrote docs/cli.md")
