"""Default prompts that turn a task into chat messages (strategies accept their own templates)."""

from __future__ import annotations

from forkpath._types import Task
from forkpath.models import GenerateRequest, Message

CODE_SYSTEM = "You are an expert Python programmer. Answer with one complete ```python code block."
CODE_USER = (
    "Complete the following Python function. Keep its signature; include any imports it needs.\n\n"
    "```python\n{prompt}```"
)
MATH_SYSTEM = "You are a careful mathematician. Think step by step, then finish with 'The answer is N.'"


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
