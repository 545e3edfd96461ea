"""Tables of results in four formats: aligned text for the terminal, Markdown, LaTeX and CSV.

    table = Table("SEED, protocol trial", [Column("model"), Column("accuracy %", "accuracy_percent", kind="pm")])
    table.rows.append(["SST-EmotionNet, ours", (68.03, 1.68)])      # a "pm" column holds (mean, std), "interval" (low, high)
    print(table.render("latex"))                             # text | markdown | latex | csv

run.py --summarize, --compare and --ablation print their tables through here (--format) and write the
same table as .csv, .md and .tex. The numbers are the same in every format: text, Markdown and LaTeX
round them (Column.digits); CSV keeps full precision, splits a mean +- std column into `<key>_mean` and
`<key>_std` (an interval into `<key>_low` and `<key>_high`), and leaves the title and the notes out (one header row, then data: what a spreadsheet or
pandas.read_csv expects). Empty cells (None) show as "-" and are empty in CSV.

Text in a table may come from a received folder (its name, a record's model): every format escapes it for
its reader: control characters as Python escapes (errors.printable) everywhere, Markdown's and LaTeX's
special characters, and a CSV cell a spreadsheet would evaluate as a formula (errors.csv_text).
"""
from __future__ import annotations

import csv
import io
import re
import sys
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from typing import Iterator

from sst.errors import csv_text, printable

FORMATS = ("text", "markdown", "latex", "csv")
_TABLE_STREAMS: list = []      # where `emit` writes while `table_output(alone=True)` holds: the command's stdout


@contextmanager
def table_output(alone: bool) -> Iterator[None]:
    """With `alone` (run.py --format markdown, latex or csv): inside, print() writes to standard error and only
    `emit` to standard output, so that `run.py ... --format latex > table.tex` holds the table and nothing else
    (progress, warnings, "written to" lines go to the terminal). Without: nothing changes."""
    if not alone:
        yield
        return
    _TABLE_STREAMS.append(sys.stdout)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        _TABLE_STREAMS.pop()


def emit(text: str) -> None:
    """Print a rendered table: to standard output, also inside `table_output`."""
    print(text, file=_TABLE_STREAMS[-1] if _TABLE_STREAMS else sys.stdout, flush=True)


PARTS = {"pm": ("mean", "std"), "interval": ("low", "high")}     # the CSV columns of a pair


@dataclass(frozen=True)
class Column:
    """One column: its header, its CSV name (default: the header in snake case), decimals for floats,
    a sign on them (differences), and its kind: "value", "pm" ((mean, std) pairs) or "interval" ((low,
    high) pairs)."""
    header: str
    key: str = ""
    digits: int = 2
    kind: str = "value"
    signed: bool = False

    @property
    def pm(self) -> bool:
        return self.kind == "pm"

    @property
    def csv_key(self) -> str:
        return self.key or "_".join(self.header.lower().replace("%", "percent").split())


@dataclass
class Table:
    """`title` heads the text and Markdown tables; `caption` (default: the title) is LaTeX's, kept short (dataset,
    protocol, what +- means); `notes` (the statistics used, warnings) go below the table in every format."""
    title: str
    columns: list[Column]
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    caption: str = ""

    def render(self, fmt: str) -> str:
        if fmt not in FORMATS:
            raise ValueError(f"{fmt=}: expected one of {FORMATS}")
        return getattr(self, f"_{fmt}")()

    def cell(self, column: Column, value, latex: bool = False, pm: str = " +- ") -> str:
        """A cell as displayed: floats rounded, (mean, std) as "mean +- std" (`pm`; LaTeX: $\\pm$), None as "-"."""
        if value is None:
            return "-"
        number = f"{{:{'+' if column.signed else ''}.{column.digits}f}}"
        if column.kind == "interval":
            return f"[{number.format(value[0])}, {number.format(value[1])}]"
        if column.pm:
            mean, std = value
            if std is None:
                return number.format(mean)
            sep = " $\\pm$ " if latex else pm
            return f"{number.format(mean)}{sep}{std:.{column.digits}f}"
        if isinstance(value, float):
            return number.format(value)
        return _latex_escape(printable(value, limit=None)) if latex else printable(value, limit=None)

    def _text(self) -> str:
        cells = [[c.header for c in self.columns]] + [[self.cell(c, v) for c, v in zip(self.columns, row)]
                                                       for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        left = [i == 0 or (any(isinstance(row[i], str) for row in self.rows)
                           and all(isinstance(row[i], str) or row[i] is None for row in self.rows))
                for i in range(len(self.columns))]      # names left-aligned, numbers (and empty columns) right-aligned
        lines = [printable(self.title, limit=None)] if self.title else []
        for r in cells:
            lines.append("  ".join(v.ljust(w) if left[i] else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
                         .rstrip())
        return "\n".join(lines + [printable(note, limit=None) for note in self.notes])

    def _markdown(self) -> str:
        lines = [f"**{_markdown_escape(self.title)}**", ""] if self.title else []
        lines.append("| " + " | ".join(_markdown_escape(c.header) for c in self.columns) + " |")
        lines.append("|" + "|".join(":---" if i == 0 else "---:" for i in range(len(self.columns))) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(_markdown_escape(self.cell(c, v)) if isinstance(v, str) else self.cell(c, v, pm=" ± ")
                                           for c, v in zip(self.columns, row)) + " |")
        if self.notes:
            lines += [""] + [f"{_markdown_escape(note)}  " for note in self.notes]
        return "\n".join(lines)

    def _latex(self) -> str:
        """A booktabs table environment: the caption, the tabular, then the notes in small type below it."""
        spec = "l" + "r" * (len(self.columns) - 1)
        escape = lambda text: _latex_escape(printable(text, limit=None))      # noqa: E731
        lines = ["% needs \\usepackage{booktabs} in the preamble (\\toprule, \\midrule, \\bottomrule)",
                 "\\begin{table}[t]", "\\centering", f"\\caption{{{escape((self.caption or self.title).strip())}}}",
                 f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                 " & ".join(escape(c.header) for c in self.columns) + " \\\\", "\\midrule"]
        for row in self.rows:
            lines.append(" & ".join(self.cell(c, v, latex=True) for c, v in zip(self.columns, row)) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        if self.notes:
            lines += ["\\par\\smallskip", "{\\footnotesize\\raggedright"] + [f"{escape(n)}\\par" for n in self.notes] + ["}"]
        lines.append("\\end{table}")
        return "\n".join(lines)

    def _csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([k for c in self.columns for k in ([f"{c.csv_key}_{part}" for part in PARTS[c.kind]]
                                                          if c.kind in PARTS else [c.csv_key])])
        for row in self.rows:
            out = []
            for c, v in zip(self.columns, row):
                values = (v if v is not None else (None, None)) if c.kind in PARTS else (v,)
                out += ["" if x is None else repr(x) if isinstance(x, float) else str(x) if isinstance(x, int)
                        else csv_text(x) for x in values]
            writer.writerow(out)
        return buf.getvalue().rstrip("\n")     # as the other formats: the caller ends the last line


_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")  # sub01_ses1 stays


def _markdown_escape(text: str) -> str:
    """Text shown as itself in Markdown: control characters escaped (errors.printable), then every character
    Markdown or its HTML could read as markup backslash-escaped (a folder named `[x](http://...)` is no link,
    `<img ...>` no image, `|` no new column)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", printable(text, limit=None))


def _latex_escape(text: str) -> str:
    """Text safe in LaTeX: its special characters escaped, +- and the percent sign written as LaTeX."""
    out = []
    for ch in text:
        out.append({"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_",
                    "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}",
                    "±": "$\\pm$"}.get(ch, ch))
    return "".join(out).replace("+-", "$\\pm$")
