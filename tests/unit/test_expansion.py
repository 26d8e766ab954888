"""``$(VAR)`` expansion in env, command and args: the kubelet's rules, case by case."""

from __future__ import annotations

import pytest

from controller.storage.expansion import expand, expand_all, expand_env
from controller.storage.images import ImageConfig
from controller.storage.ocispec import ProcessSpec, build_template, process_args

VARS = {"VAR_A": "A", "VAR_B": "B", "EMPTY": "", "DOLLAR": "$", "REF": "$(VAR_A)"}

EXPANSIONS = [
    pytest.param("", "", id="empty-text"),
    pytest.param("plain text", "plain text", id="no-reference"),
    pytest.param("$(VAR_A)", "A", id="whole-text-is-a-reference"),
    pytest.param("--flag=$(VAR_A)", "--flag=A", id="reference-at-the-end"),
    pytest.param("$(VAR_A)-suffix", "A-suffix", id="reference-at-the-start"),
    pytest.param("$(VAR_A)$(VAR_B)", "AB", id="two-references-side-by-side"),
    pytest.param("x $(VAR_A) y $(VAR_B) z", "x A y B z", id="references-between-text"),
    pytest.param("$(EMPTY)", "", id="defined-as-empty"),
    pytest.param("[$(EMPTY)]", "[]", id="defined-as-empty-inside-text"),
    pytest.param("$(UNKNOWN)", "$(UNKNOWN)", id="unknown-reference-kept"),
    pytest.param("a $(UNKNOWN) $(VAR_A)", "a $(UNKNOWN) A", id="unknown-kept-known-expanded"),
    pytest.param("$$(VAR_A)", "$(VAR_A)", id="escaped-reference-is-literal"),
    pytest.param("$$$(VAR_A)", "$A", id="escaped-dollar-then-reference"),
    pytest.param("$$$$(VAR_A)", "$$(VAR_A)", id="two-escaped-dollars-then-parens"),
    pytest.param("$$", "$", id="escaped-dollar-alone"),
    pytest.param("$$$", "$$", id="escaped-dollar-then-trailing-dollar"),
    pytest.param("cost: 5$", "cost: 5$", id="trailing-dollar-kept"),
    pytest.param("$", "$", id="lone-dollar"),
    pytest.param("$VAR_A", "$VAR_A", id="shell-style-reference-not-expanded"),
    pytest.param("${VAR_A}", "${VAR_A}", id="braces-not-expanded"),
    pytest.param("$(VAR_A", "$(VAR_A", id="unterminated-reference-kept"),
    pytest.param("$(", "$(", id="unterminated-opener-alone"),
    pytest.param(
        "$(VAR_A $(VAR_B)", "$(VAR_A $(VAR_B)", id="unterminated-swallows-up-to-next-closer"
    ),
    pytest.param("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))", id="nested-is-one-unknown-name"),
    pytest.param("$()", "$()", id="empty-name-kept"),
    pytest.param("$(VAR_A))", "A)", id="extra-closer-is-text"),
    pytest.param("$(DOLLAR)(VAR_A)", "$(VAR_A)", id="values-are-not-expanded-again"),
    pytest.param("$(REF)", "$(VAR_A)", id="a-value-holding-a-reference-is-not-expanded"),
    pytest.param("é$(VAR_A)ü", "éAü", id="non-ascii-around-a-reference"),
    pytest.param("$é", "$é", id="dollar-before-non-ascii-kept"),
]


@pytest.mark.parametrize(("text", "expanded"), EXPANSIONS)
def test_references_are_expanded_as_the_kubelet_does(text, expanded):
    assert expand(text, VARS) == expanded


ENVS = [
    pytest.param([("A", "1"), ("B", "$(A)-2")], {"A": "1", "B": "1-2"}, id="refers-to-earlier"),
    pytest.param(
        [("B", "$(A)-2"), ("A", "1")], {"B": "$(A)-2", "A": "1"}, id="refers-to-later-kept"
    ),
    pytest.param([("A", "$(A)")], {"A": "$(A)"}, id="refers-to-itself-kept"),
    pytest.param(
        [("A", "1"), ("B", "$(A)"), ("C", "$(B)$(B)")],
        {"A": "1", "B": "1", "C": "11"},
        id="chain-of-references",
    ),
    pytest.param([("A", "1"), ("B", "$$(A)")], {"A": "1", "B": "$(A)"}, id="escaped-in-env"),
    pytest.param([("A", "")], {"A": ""}, id="empty-value"),
    pytest.param(
        [("A", "1"), ("A", "2$(A)")], {"A": "21"}, id="repeated-name-sees-its-earlier-value"
    ),
]


@pytest.mark.parametrize(("env", "resolved"), ENVS)
def test_env_values_refer_to_the_entries_before_them(env, resolved):
    assert expand_env(env) == resolved


def test_unset_command_or_args_stay_unset():
    assert expand_all(None, VARS) is None
    assert expand_all([], VARS) == []


IMAGE = ImageConfig(
    entrypoint=("/bin/sh", "-c"), cmd=("echo $(GREETING)",), env=("GREETING=image", "PATH=/bin")
)

ARGVS = [
    pytest.param(
        ProcessSpec(command=["/bin/echo", "$(GREETING)"], env={"GREETING": "hi"}),
        ["/bin/echo", "hi"],
        id="command-expanded",
    ),
    pytest.param(
        ProcessSpec(args=["--name=$(NAME)", "$$(NAME)"], env={"NAME": "web"}),
        ["/bin/sh", "-c", "--name=web", "$(NAME)"],
        id="args-expanded-entrypoint-kept",
    ),
    pytest.param(
        ProcessSpec(env={"GREETING": "spec"}),
        ["/bin/sh", "-c", "echo $(GREETING)"],
        id="image-cmd-never-expanded",
    ),
    pytest.param(
        ProcessSpec(args=["$(GREETING) $(PATH)"]),
        ["/bin/sh", "-c", "$(GREETING) $(PATH)"],
        id="image-env-is-not-a-source",
    ),
    pytest.param(
        ProcessSpec(command=["$(BIN)"], args=["$(OPTS)"], env={"BIN": "/x", "OPTS": "-v $(BIN)"}),
        ["/x", "-v /x"],
        id="args-see-expanded-env-values",
    ),
]


@pytest.mark.parametrize(("spec", "argv"), ARGVS)
def test_the_process_args_expand_the_specs_command_and_args_from_its_env(spec, argv):
    assert process_args(IMAGE, spec) == argv


def test_the_runtime_config_env_holds_the_expanded_values():
    spec = ProcessSpec(args=["true"], env={"HOST": "db", "URL": "http://$(HOST):5432"})
    env = build_template(IMAGE, spec)["process"]["env"]
    assert "URL=http://db:5432" in env
    assert "GREETING=image" in env
