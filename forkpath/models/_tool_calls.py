"""Tool calls written as text: how local models (and the fake model) call tools.

API models return calls as structured fields; a local model writes them in its chat template's
format, which forkpath reads back here. The format of Qwen2.5 and the Hermes family (the most
common among open models)::

    <tool_call>
    {"name": "python", "arguments": {"code": "print(6 * 7)"}}
    </tool_call>

A call that cannot be read (not JSON, no name, arguments that are not an object, an unclosed
tag) is not dropped silently: it is reported as a problem, which an agent shows the model as an
observation so it can try again.
"""

from __future__ import annotations

import json
import re

from forkpath.models._constraints import Constraint
from forkpath.models._types import GenerateRequest, GenerateResult, ToolCall

_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
TOOL_CALL_TAGS = ("<tool_call>", "</tool_call>")


def template_supports_tools(template: str | None) -> bool:
    """Whether a chat template renders ``tools`` and asks for ``<tool_call>`` blocks."""
    return bool(template) and "tools" in template and "<tool_call>" in template  # type: ignore[operator]


def parse_tool_calls(text: str, *, id_prefix: str = "call") -> tuple[str, list[ToolCall], list[str]]:
    """Split ``text`` into what the model said, the calls it made and the calls it garbled.

    Returns ``(content, calls, problems)``: the text outside ``<tool_call>`` blocks (stripped),
    the readable calls in order (ids ``<id_prefix>_<i>``), and one message per unreadable block.

    Example:
        >>> parse_tool_calls('Let me run it.\\n<tool_call>\\n{"name": "python", "arguments": {"code": "1"}}\\n</tool_call>')
        ('Let me run it.', [ToolCall(id='call_0', name='python', arguments='{"code": "1"}')], [])
    """
    calls: list[ToolCall] = []
    problems: list[str] = []
    for i, match in enumerate(_CALL.finditer(text)):
        body = match.group(1).strip()
        closed = match.group(0).rstrip().endswith("</tool_call>")
        try:
            data = json.loads(body)
        except json.JSONDecodeError as e:
            why = "the <tool_call> block is not closed" if not closed else f"not JSON ({e.msg})"
            problems.append(f"tool call {i + 1}: {why}: {body[:200]!r}")
            continue
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
            problems.append(
                f'tool call {i + 1}: expected {{"name": ..., "arguments": {{...}}}}, got {body[:200]!r}'
            )
            continue
        arguments = data.get("arguments", data.get("parameters", {}))
        if isinstance(arguments, str):  # some models write the arguments as a JSON string
            text_arguments = arguments
        else:
            text_arguments = json.dumps(arguments, ensure_ascii=False)
        calls.append(ToolCall(id=f"{id_prefix}_{len(calls)}", name=data["name"], arguments=text_arguments))
    content = _CALL.sub("", text).strip()
    return content, calls, problems


def forced_call_opening(request: GenerateRequest) -> str:
    """Text a local model's reply is made to start with so that it calls a tool when
    ``tool_choice`` demands one (``required`` or a tool's name): a ``<tool_call>`` block is
    opened and :func:`forced_call_constraint` holds its body to a call. A request with a
    constraint of its own keeps it, so a tool's name then also writes the name and the model fills
    in only the arguments."""
    if not request.tools or request.tool_choice in ("auto", "none"):
        return ""
    if request.tool_choice == "required" or request.constraint is None:
        return "<tool_call>\n"
    return f'<tool_call>\n{{"name": {json.dumps(request.tool_choice)}, "arguments":'


def forced_call_constraint(request: GenerateRequest) -> Constraint | None:
    """The JSON Schema the body of a forced call is held to on a model that masks tokens: a call
    of an allowed tool whose arguments its schema accepts. Without it a small model often ends
    its reply right after the opening tag (Qwen2.5-Coder-0.5B: end of text at p = 0.86 after
    ``<tool_call>`` on a word problem). None when no call is forced or the request carries a
    constraint of its own."""
    if not forced_call_opening(request) or request.constraint is not None:
        return None
    allowed = [t for t in request.tools if request.tool_choice in ("required", t.name)]
    variants = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.name},
                "arguments": t.parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in allowed
    ]
    return Constraint(json_schema=variants[0] if len(variants) == 1 else {"anyOf": variants})


def read_tool_calls(
    result: GenerateResult, request: GenerateRequest, *, opening: str = "", id_prefix: str = "call"
) -> GenerateResult:
    """Move the ``<tool_call>`` blocks of a text reply into ``result.tool_calls`` (readable ones)
    and ``result.tool_call_problems`` (garbled ones); a reply with calls finishes ``tool_calls``.
    ``opening`` is the text the reply was made to start with (:func:`forced_call_opening`)."""
    if not request.tools or request.tool_choice == "none":
        return result
    text = opening + result.text
    if "<tool_call>" not in text:
        text = _tag_bare_call(text, {t.name for t in request.tools})
    content, calls, problems = parse_tool_calls(text, id_prefix=id_prefix)
    result.text, result.tool_calls, result.tool_call_problems = content, calls, problems
    if calls:
        result.finish_reason = "tool_calls"
    return result


_FENCE = re.compile(r"\A```(?:json)?\s*(.*?)\s*```\Z", re.DOTALL)


def _tag_bare_call(text: str, names: set[str]) -> str:
    """Small models often answer a tool prompt with the call's JSON alone (Qwen2.5-Coder-0.5B
    does, most of the time), without the ``<tool_call>`` tags: a reply that is nothing but one
    JSON object naming a given tool, or shaped ``{"name": ..., "arguments": ...}`` (an unknown
    tool's name then comes back to the model as an observation), optionally in a code fence, is
    read as that call."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    body = fenced.group(1) if fenced else stripped
    if not body.startswith("{"):
        return text
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return text
    if isinstance(data, dict) and (data.get("name") in names or {"name", "arguments"} <= data.keys()):
        return f"<tool_call>\n{body}\n</tool_call>"
    return text
