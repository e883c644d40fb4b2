"""Label sampled GSM8K solutions with the answer a person reads in them: the extraction test data.

Input: the samples ``bench/gsm8k_samples.py`` and ``bench/peers.py`` saved. Output:
``tests/verifiers/data/gsm8k_solutions.jsonl``, one solution per line with its ``label`` (the
number a person reads as the stated answer, canonical, or null when it states none) and
``how`` it was labelled: ``rules`` (the rules below, written independently of forkpath's
extractor) or ``hand`` (a person read it: every solution where the rules and the extractor
disagree is read by hand, and the decision is kept in ``gsm8k_hand_labels.json`` with a note).

The labelling rules (what a person reads):

1. The answer is where the solution states it: "... answer is ...", "Answer: ...", "#### ...",
   ``\\boxed{...}``. The last statement that gives a number is the answer. A statement that
   gives none (the placeholder ``N`` echoed from the prompt, "the answer is the final answer
   to the 80th step") does not override an earlier one.
2. In a statement, the answer is the number the sentence settles on: the result after the last
   ``=``; currency, units, thousands separators and words around it ignored; an ordinal is not
   an answer. A statement whose answer is an expression with an unknown (``41 - 7M``) states
   no number: the solution abstains (label null).
3. A solution with no statement giving a number: the last number of its text (a solution cut
   at the token limit included).
4. No number at all: null.

    python bench/gsm8k_label.py runs/gsm8k-samples.jsonl runs/bench-peers/samples.jsonl

The committed data can be one of the inputs (its rows carry the same fields): name it first to
keep every labelled solution when adding new samples, since a sample key (system, model, task,
sample index) that occurs twice is taken from the first file that holds it.
"""

from __future__ import annotations

import argparse
import json
import re
from fractions import Fraction
from pathlib import Path

from forkpath.verifiers import extract_number

DATA = Path(__file__).resolve().parent.parent / "tests" / "verifiers" / "data"
OUT = DATA / "gsm8k_solutions.jsonl"
HAND = DATA / "gsm8k_hand_labels.json"

_MARK = re.compile(r"answer\s*(?:\*\*)?\s*(?:is|:|=)|####|\\boxed\s*\{", re.IGNORECASE)
_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def _plain(text: str) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"\\frac\{(\d+)\}\{(\d+)\}", r"\1/\2", text)
    text = re.sub(r"\\[a-zA-Z]+|[$*{}\\]", " ", text)
    return text


def _value(number: str) -> str:
    value = Fraction(number)
    if value.denominator == 1:
        return str(value.numerator)
    as_float = float(value)
    return format(as_float, "f").rstrip("0").rstrip(".") if round(as_float, 6) == as_float else str(value)


def _statement_number(statement: str) -> tuple[str | None, bool]:
    """(number, decided) for one statement, by rule 2."""
    text = _plain(statement)
    if "=" in text:
        right = text.rsplit("=", 1)[1]
        numbers = [m for m in _NUM.finditer(right) if not re.match(r"(st|nd|rd|th)\b", right[m.end() :])]
        if numbers:
            return _value(numbers[0].group()), True
    numbers = [m for m in _NUM.finditer(text) if not re.match(r"(st|nd|rd|th)\b", text[m.end() :])]
    if not numbers:
        return None, False
    first = numbers[0]
    rest = text[first.end() :]
    if re.match(r"[A-Za-z]\b", rest) and rest[0] not in "mgshlLkKcCFW":  # 5x, 7M: a variable
        return None, True
    if re.match(r"\s*[-+*/x]\s*\d*[A-Za-z]\b", rest) and not re.match(r"\s*-\s*[a-z]{2}", rest):
        return None, True  # 41 - 7M: an expression with an unknown
    fraction = re.match(r"\s*/\s*(\d+)", rest)
    if fraction and not re.match(r"\s*[-+*x]", rest[fraction.end() :]):
        return _value(f"{first.group()}/{fraction.group(1)}"), True
    operation = re.match(r"\s*([-+*x])\s*(\d+(?:\.\d+)?)\s*(?:[.,;)]|$)", rest)
    if operation:  # "3 + 4": the value
        a, b = Fraction(first.group()), Fraction(operation.group(2))
        op = operation.group(1)
        return _value(str(a + b if op == "+" else a - b if op == "-" else a * b)), True
    return _value(first.group()), True


def rule_label(text: str) -> str | None:
    """The label the written rules give (independent of forkpath's extractor)."""
    statements = []
    for mark in _MARK.finditer(text):
        rest = text[mark.end() :]
        if mark.group().lower().startswith("\\boxed"):
            depth, end = 1, None
            for i, ch in enumerate(rest):
                depth += ch == "{"
                depth -= ch == "}"
                if depth == 0:
                    end = i
                    break
            if end is None or not rest[:end].strip():
                continue  # an unbalanced or empty box states nothing
            statements.append(rest[:end])
        else:
            statements.append(re.split(r"\n|(?<!\d)\.|\.(?!\d)", rest, maxsplit=1)[0])
    for statement in reversed(statements):
        number, decided = _statement_number(statement)
        if decided:
            return number
    numbers = [
        m for m in _NUM.finditer(_plain(text)) if not re.match(r"(st|nd|rd|th)\b", _plain(text)[m.end() :])
    ]
    return _value(numbers[-1].group()) if numbers else None


def _key(row: dict) -> str:
    return f"{row.get('system', 'forkpath (in-process)')}|{row['model']}|{row['task']}|{row['sample']}"


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    return Fraction(a) == Fraction(b)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("samples", nargs="+", help="JSONL files of samples")
    args = parser.parse_args()
    hand = json.loads(HAND.read_text()) if HAND.exists() else {}
    rows, unread, seen = [], [], set()
    for path in args.samples:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            sample = json.loads(line)
            model = sample["model"].removeprefix("local/")
            row = {
                "system": sample.get("system", "forkpath (in-process)"),
                "model": model,
                "task": sample["task"],
                "sample": sample["sample"],
                "reference": sample["reference"],
                "text": sample["text"],
            }
            key = _key(row)
            if key in seen:  # the first file that holds a sample wins (the committed data first)
                continue
            seen.add(key)
            by_rule = rule_label(row["text"])
            if key in hand:
                row["label"], row["how"], row["note"] = hand[key]["label"], "hand", hand[key]["note"]
            else:
                row["label"], row["how"] = by_rule, "rules"
                if not _same(by_rule, extract_number(row["text"])):
                    unread.append((key, by_rule, extract_number(row["text"]), row["text"]))
            rows.append(row)
    DATA.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(
        f"{len(rows)} solutions written to {OUT} ({sum(r['how'] == 'hand' for r in rows)} labelled by hand)"
    )
    for key, by_rule, extracted, text in unread:
        print(f"\n=== {key}: rules {by_rule!r}, extractor {extracted!r}; read it and decide in {HAND.name}")
        print("   …" + " ".join(text.split())[-400:])


if __name__ == "__main__":
    main()
