"""Default prompts that turn a task into chat messages (strategies accept their own templates)."""

from __future__ import annotations

import re
import string
from typing import Annotated

from pydantic import AfterValidator

from forkpath._types import Task
from forkpath.models import GenerateRequest, Message

CODE_SYSTEM = "You are an expert Python programmer. Answer with one complete ```python code block."
CODE_USER = (
    "Complete the following Python function. Keep its signature; include any imports it needs.\n\n"
    "```python\n{prompt}```"
)
MATH_SYSTEM = "You are a careful mathematician. Think step by step, then finish with 'The answer is N.'"


def check_prompt_template(template: str) -> str:
    """Check a strategy's ``prompt`` template before any run: ``str.format`` fields that name the
    task's fields (``{prompt}``, ``{entry_point}``, ...), ``{{``/``}}`` for literal braces.

    Raises:
        ValueError: naming the problem (a pydantic validator turns it into a ``file:line`` error).
    """
    fields = sorted(Task.model_fields)
    jinja = re.search(r"\{\{\s*(\w+)\s*\}\}", template)
    if jinja and jinja.group(1) in fields:
        raise ValueError(
            f"prompt template: {jinja.group(0)} is Jinja; a strategy's prompt is a format string: "
            f"write {{{jinja.group(1)}}}"
        )
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"prompt template: {e} (write {{{{ and }}}} for literal braces)") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in fields:
            shown = field if len(field) <= 40 else field[:40] + "..."
            raise ValueError(
                f"prompt template: {{{shown}}} is not a task field (use {', '.join('{' + f + '}' for f in fields)}; "
                "{{ and }} for literal braces)"
            )
        if spec:
            raise ValueError(f"prompt template: {{{field}:{spec}}}: format specs are not supported")
        if conversion not in (None, "s", "r", "a"):
            raise ValueError(
                f"prompt template: {{{field}!{conversion}}}: unknown conversion (use !s, !r or !a)"
            )
    return template


PromptTemplate = Annotated[str, AfterValidator(check_prompt_template)]
"""A strategy's ``prompt`` parameter, checked by :func:`check_prompt_template` when validated."""


def task_messages(task: Task, template: str | None = None) -> tuple[Message, ...]:
    """Chat messages asking for ``task``; ``template`` may use ``{prompt}`` and the task's fields.

    A task that carries a whole conversation (``metadata["messages"]``, a list of ``{role,
    content}``: what ``forkpath serve`` receives) is asked as that conversation.
    """
    conversation = task.metadata.get("messages") if template is None else None
    if conversation:
        messages = [Message.model_validate(m) for m in conversation]
        if messages[-1].role == "user":  # the task's prompt is its last question (a flow may rewrite it)
            messages[-1] = Message(role="user", content=task.prompt)
        return tuple(messages)
    fields = task.model_dump()
    if template is not None:
        return (Message(role="user", content=template.format(**fields)),)
    if task.kind == "code":
        return (
            Message(role="system", content=CODE_SYSTEM),
            Message(role="user", content=CODE_USER.format(**fields)),
        )
    if task.kind == "math":
        return (Message(role="system", content=MATH_SYSTEM), Message(role="user", content=task.prompt))
    return (Message(role="user", content=task.prompt),)


def answer_request(
    task: Task, *, max_tokens: int, prompt: str | None, logprobs: bool = True
) -> GenerateRequest:
    """The greedy request for ``task`` that a cascade sends to either model (and its calibration)."""
    return GenerateRequest(messages=task_messages(task, prompt), max_tokens=max_tokens, logprobs=logprobs)
