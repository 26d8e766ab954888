"""``$(VAR)`` references in a container's env, command and args, as the kubelet has them.

Kubernetes users write ``args: ["--listen=$(PORT)"]`` and expect the value of the
container's ``PORT`` variable, not the literal text, and a ``$(OTHER)`` inside an env
value to be the value of an env entry listed before it. The kubelet does both (its
``third_party/forked/golang/expansion`` package, called by ``makeEnvironmentVariables``
for env values and by ``ExpandContainerCommandAndArgs`` for command and args); the same
rules are kept here so that manifests written for Kubernetes mean the same in podstore:

- ``$(NAME)`` becomes NAME's value when NAME is defined, and stays as written otherwise;
- ``$$`` becomes ``$``, so ``$$(NAME)`` is the literal ``$(NAME)``;
- a ``$`` before any other character, a trailing ``$`` and an unterminated ``$(`` are
  kept as written.

Only the pod spec's variables count: the image's Env is not seen by the kubelet (the
runtime adds it later), so ``$(PATH)`` stays literal unless the spec sets PATH; and the
image's own Entrypoint and Cmd are never expanded. The kubelet works on bytes and turns
a ``$`` before a non-ASCII character into mojibake; here text is characters and such a
``$`` is simply kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

_OPERATOR = "$"
_OPENER = "("
_CLOSER = ")"


def expand(text: str, variables: Mapping[str, str]) -> str:
    """``text`` with its ``$(NAME)`` references replaced from ``variables``."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    end = len(text)
    while cursor < end:
        if text[cursor] == _OPERATOR and cursor + 1 < end:
            out.append(text[checkpoint:cursor])
            following = text[cursor + 1]
            if following == _OPERATOR:  # an escaped operator
                out.append(_OPERATOR)
                cursor += 1
            elif following == _OPENER:
                closer = text.find(_CLOSER, cursor + 2)
                if closer < 0:  # unterminated: kept, and the rest is read on as text
                    out.append(_OPERATOR + _OPENER)
                    cursor += 1
                else:
                    name = text[cursor + 2 : closer]
                    value = variables.get(name)
                    out.append(value if value is not None else f"$({name})")
                    cursor = closer
            else:  # a lone operator: kept with the character after it
                out.append(_OPERATOR + following)
                cursor += 1
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def expand_env(env: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The env in order, each value expanded from the entries before it (the kubelet's way).

    An entry naming itself or a later entry keeps that reference as written; a name
    given twice keeps its last value, expanded from what came before that entry.
    """
    resolved: dict[str, str] = {}
    for name, value in env:
        resolved[name] = expand(value, resolved) if value else value
    return resolved


def expand_all(items: Sequence[str] | None, variables: Mapping[str, str]) -> list[str] | None:
    """Each of ``items`` expanded; None stays None (an unset command or args)."""
    if items is None:
        return None
    return [expand(item, variables) for item in items]
