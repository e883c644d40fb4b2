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

from forkpath.models._types import ToolCall

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
