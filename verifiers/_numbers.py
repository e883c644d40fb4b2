"""Reading a numeric final answer (GSM8K and every task whose answers are numbers).

A solution states its answer in a sentence: "The answer is 18.", ``#### 18``, ``\\boxed{18}``,
"Answer: 18". :func:`extract_number` reads the number in the last such statement that has one,
and only then falls back to the last number of the whole text. Reading a statement:

1. LaTeX is unwrapped (``\\boxed``, ``\\text``, ``\\frac{a}{b}`` as ``a/b``, math delimiters) and
   currency signs, emphasis and thousands separators are dropped.
2. Words before the first number are skipped: a placeholder or variable (``N``, ``x =``,
   ``N, which equals``), "approximately", "a total of".
3. The first number (an ordinal, "the 80th step", is not one) is the answer unless it starts an expression: followed by an operator and
   another term (``41 - 7M``, ``3 + 4``) or written against a variable (``7M``, ``2x``). An
   expression with ``=`` is read after its last ``=`` (``N = 7 * 7 = 49`` reads 49); one without
   has no number (``41 - 7M``), and the statement is skipped.
4. Units, percent signs and trailing words after the number are ignored (``$18.00 per hour``).

A number the text ends inside (``15,0``: a solution cut off mid-number) is not read. A box that is empty or never closed is not a statement: it is skipped, never cut into a
fragment; the digits of a box left open at the end (a solution cut off inside it) count only
when the rest of the text has no number. The number comes back canonical (``1,000.50`` → ``1000.5``, ``18.00`` → ``18``,
``\\frac{6}{4}`` → ``1.5``, ``1/3`` stays ``1/3``), so equal numbers are equal strings.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

_STATED = re.compile(
    r"(?:\bfinal\s+answer|\banswer)(?:\s+(?:to|for|of)\b[^.\n=:\d]{0,60}?)?"
    r"\s*(?:\*\*)?\s*(?:is|would\s+be|will\s+be|should\s+be|=|:)(?:\*\*)?\s*",
    re.IGNORECASE,
)
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_SENTENCE_END = re.compile(r"\n|\.(?!\d)|(?<!\d)\.")
_NUMBER = re.compile(
    r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!,\d{3})(?!st\b|nd\b|rd\b|th\b|\d)"  # not 80th
    r"|(?<![\w.])-?\.\d+"
)
_CUT_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})*,\d{1,2}$")  # "15,0": cut off mid-number
_FRACTION = re.compile(r"\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*(-?[\d.,]+)\s*\}")
_ANY_FRACTION = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_UNKNOWN_BEFORE = re.compile(
    r"(?<![A-Za-z])[A-Za-z]\)*\s*(?:[-+*/×÷^]|\\times|\\cdot)\s*\(*\s*$"
)  # "R/", "(R)/("
_WRAPPERS = re.compile(r"\\(?:boxed|fbox|text|textbf|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_OPERATOR = re.compile(r"\s*(?:[+*/×÷^-]|\\times|\\cdot|\\div)\s*|\s*[xX]\s*(?=\d)")
_OPERAND = re.compile(
    r"\(*-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[A-Za-z](?![A-Za-z\d]))?\)*"  # 12, 7M, (3
    r"|\(*(?![aAI]\b)[A-Za-z](?![A-Za-z'])\)*"  # a lone variable: x, N (not "a", "I")
)
_VARIABLE_SUFFIX = re.compile(r"[A-Za-z](?![A-Za-z])")
_UNIT_LETTERS = set("mgshlLkKcCFW")  # 5m, 3h, 10s, 2L, 5K ...: a unit, not a variable
_WORDS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}


def _boxes(text: str) -> list[tuple[int, str]]:
    """``(position, content)`` of every balanced, non-empty ``\\boxed{...}`` / ``\\fbox{...}``."""
    found = []
    for match in _BOX.finditer(text):
        depth = 1
        for i in range(match.end(), len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    content = text[match.end() : i].strip()
                    if content:
                        found.append((match.start(), content))
                    break
    return found


def statements(text: str) -> list[tuple[int, str]]:
    """Every stated answer in ``text`` as ``(position, what follows the marker)``, in text order:
    boxes, ``####`` lines and "the answer is ..." / "Answer: ..." sentences."""
    found = _boxes(text)
    found += [(m.start(), m.group(1)) for m in _HASHES.finditer(text)]
    for match in _STATED.finditer(text):
        rest = text[match.end() :].lstrip(" \t\n:*")  # "The final answer is:\n\n18"
        box = _BOX.match(re.sub(r"^(?:\\\(|\\\[|\$+)\s*", "", rest))
        if box:  # "the answer is \(\boxed{18}\)": the box is the statement, balanced or not
            continue
        end = _SENTENCE_END.search(rest)
        found.append((match.start(), rest[: end.start()] if end else rest))
    return sorted(found, key=lambda item: item[0])


def _unwrap(text: str) -> str:
    text = _FRACTION.sub(r"\1/\2", text)
    text = _ANY_FRACTION.sub(r"(\1)/(\2)", text)  # \frac{R}{2}: a fraction with an unknown
    for _ in range(3):  # nested wrappers: \boxed{\text{18}}
        text, count = _WRAPPERS.subn(r" \1 ", text)
        if not count:
            break
    text = re.sub(r"\\[$%]", lambda m: m.group(0)[1], text)
    text = re.sub(r"\\[()\[\]]|\\[,;!: ]|\\left|\\right|\\quad|\*\*|[$€£¥~`]", " ", text)
    return text


def canonical(number: str) -> str | None:
    """``number`` (``1,000.50``, ``-3``, ``6/4``) as a canonical string, or None if it is not one."""
    number = number.replace(",", "").strip()
    try:
        top, slash, bottom = number.partition("/")  # "-8/-2": signs on both parts
        value = Fraction(top.strip()) / Fraction(bottom.strip()) if slash else Fraction(number)
    except (ValueError, ZeroDivisionError):
        return None
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    try:
        decimal = Decimal(value.numerator) / Decimal(value.denominator)
    except InvalidOperation:  # pragma: no cover - a terminating fraction always divides
        return None
    text = format(decimal.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _number_words(text: str) -> str | None:
    """A short statement that spells its number ("eighteen", "twenty-five apples")."""
    words = re.findall(r"[a-z]+", text.lower())
    if not words or len(words) > 4 or words[0] not in _WORDS:
        return None
    value = _WORDS[words[0]]
    if value >= 20 and len(words) > 1 and _WORDS.get(words[1], 10) < 10:
        value += _WORDS[words[1]]
    return str(value)


def _expression(text: str, start: int) -> tuple[str, int]:
    """The arithmetic expression that starts at ``start`` (a number): its text and its end."""
    end = start
    while True:
        operand = _OPERAND.match(text, end)
        if operand is None:
            return text[start:end], end
        end = operand.end()
        operator = _OPERATOR.match(text, end)
        if operator is None or not _OPERAND.match(text, operator.end()):
            return text[start:end], end
        end = operator.end()


def _evaluate(expression: str) -> str | None:
    """A numeric expression's value (``+ - * / ×`` and parentheses), canonical; None if it has
    a variable or does not parse."""
    import ast

    source = re.sub(r"(\d),(\d{3})", r"\1\2", expression).replace("×", "*").replace("÷", "/")
    source = re.sub(r"(?<=[\d)])\s*[xX]\s*(?=[\d(])", " * ", source)
    source = source.replace("\\times", "*").replace("\\cdot", "*").replace("\\div", "/").replace("^", "**")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError:
        return None

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return Fraction(str(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
            if isinstance(node.op, ast.Pow) and right.denominator == 1 and abs(right) <= 12:
                return Fraction(left) ** int(right)
        raise ValueError("not a numeric expression")

    try:
        result = value(tree.body)
    except (ValueError, ZeroDivisionError):
        return None
    return canonical(str(result))


def read_number(statement: str) -> tuple[str | None, bool]:
    """What a stated answer says: ``(number, decided)``.

    ``(n, True)``: it states the number ``n``. ``(None, True)``: it states an answer that is not
    a number (``41 - 7M``, ``5x``): the solution abstains. ``(None, False)``: it states no number
    at all (a placeholder ``N``, an empty sentence): look elsewhere.
    """
    text = _unwrap(statement)
    match = _NUMBER.search(text)
    if match is None:
        spelled = _number_words(text)
        return spelled, spelled is not None
    if _UNKNOWN_BEFORE.search(text[: match.start()]):  # "R/2 + 5": an expression with an unknown
        after = text[match.end() :]
        if "=" in after:
            number, decided = read_number(after.rsplit("=", 1)[1])
            if decided:
                return number, True
        return None, True
    if "=" in text[match.end() :]:  # "7 * 7 = 49", "12 apples - 3 apples = 9 apples": after the last =
        number, decided = read_number(text[match.end() :].rsplit("=", 1)[1])
        if decided:
            return number, True
    opening = re.search(r"\(+\s*$", text[: match.start()])
    expression, _ = _expression(text, opening.start() if opening else match.start())
    if opening:
        return _evaluate(expression), True
    unit = expression[len(match.group()) :]
    if not unit or unit in _UNIT_LETTERS:  # a plain number, or one with a unit letter (5m)
        return canonical(match.group()), True
    return _evaluate(expression), True


def last_number(text: str) -> str | None:
    """The last number of ``text`` that is not a variable's coefficient (``7M``), canonical."""
    text = _unwrap(text)
    for match in reversed(list(_NUMBER.finditer(text))):
        suffix = _VARIABLE_SUFFIX.match(text, match.end())
        if suffix is not None and suffix.group() not in _UNIT_LETTERS:
            continue
        fraction = re.match(r"\s*/\s*(-?\d+)(?![\d.])", text[match.end() :])
        if fraction and _VARIABLE_SUFFIX.match(text, match.end() + fraction.end()):
            continue  # "75/2x": a coefficient of x, not a number
        before = re.search(r"(?<![\w.])(-?\d+)\s*/\s*$", text[: match.start()])
        if before:  # the denominator of a fraction: the fraction is the number
            return canonical(f"{before.group(1)}/{match.group()}")
        if fraction:
            return canonical(f"{match.group()}/{fraction.group(1)}")
        return canonical(match.group())
    return None


def extract_number(text: str) -> str | None:
    """The numeric final answer of a solution, canonical, or None when it states none.

    Example:
        >>> extract_number("So 7 * 7 = 49 trees. The answer is N = 49.")
        '49'
        >>> extract_number("The answer is N, which equals $30,000.")
        '30000'
        >>> extract_number("Each box holds 6, so 4 boxes hold 24.\\nThe answer is N.")
        '24'
    """
    cut_number = _CUT_NUMBER.search(text)
    if cut_number:  # "... the difference is 15,0": the text ends inside a number, a fragment
        text = text[: cut_number.start()]
    for _, statement in reversed(statements(text)):
        number, decided = read_number(statement)
        if decided:
            return number
    cut = _unclosed_box(text)
    if cut is not None:  # "... which is 11. The answer is \boxed{1": a fragment, read last
        return last_number(text[:cut]) or last_number(text[cut:])
    return last_number(text)


def _unclosed_box(text: str) -> int | None:
    """Where the last box starts when it is never closed (a solution cut off inside it)."""
    starts = [m.start() for m in _BOX.finditer(text)]
    if not starts:
        return None
    opened = _BOX.match(text, starts[-1])
    assert opened is not None
    depth = 1
    for ch in text[opened.end() :]:
        depth += (ch == "{") - (ch == "}")
        if depth == 0:
            return None
    return starts[-1]
