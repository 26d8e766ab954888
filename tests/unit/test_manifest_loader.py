"""controller.manifest.loader: files and folders of manifests, every problem located.

Files live in ``tmp_path`` only; nothing here touches a store or runs a process.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.manifest import loader
from controller.manifest.loader import Key, Loaded, Problem

NODE = "node-a"
API = "podstore.dev/v1alpha1"
# Stands for a registry password: it must never appear in a problem's message.
SECRET_WORD = "hunter2-do-not-print"


def pod(name: str = "web", namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": API, "kind": "StoragePod", "metadata": meta, "spec": dict(spec)}


def container(name: str = "web-app", pod_name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "StorageContainer",
        "metadata": {"name": name},
        "spec": {"podName": pod_name, "image": "registry.example.com/busybox:1.36", **spec},
    }


def docker_config() -> dict[str, Any]:
    auth = base64.b64encode(f"user:{SECRET_WORD}".encode()).decode()
    return {"auths": {"registry.example.com": {"auth": auth, "password": SECRET_WORD}}}


def pull_secret(name: str = "pull", **fields: Any) -> dict[str, Any]:
    encoded = base64.b64encode(json.dumps(docker_config()).encode()).decode()
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": encoded},
    }
    secret.update(fields)
    return secret


def write(folder: Path, name: str, *docs: Any) -> Path:
    """A manifest file: JSON for ``.json`` (one document), YAML documents otherwise."""
    path = folder / name
    if name.endswith(".json"):
        (doc,) = docs
        path.write_text(json.dumps(doc))
    else:
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def load(*paths: Path, node_name: str = NODE) -> Loaded:
    return loader.load([str(p) for p in paths], node_name=node_name)


def keys(loaded: Loaded) -> list[Key]:
    return [doc.key for doc in loaded.documents]


def where(problems: list[Problem]) -> list[tuple[str, int | None, str]]:
    return [(p.file, p.document, p.field) for p in problems]


def pod_key(name: str = "web", namespace: str = "default") -> Key:
    return Key("StoragePod", namespace, name)


# --- files and folders ------------------------------------------------------------------


def test_a_single_file_is_read_with_its_documents_located(tmp_path: Path) -> None:
    path = write(tmp_path, "web.yaml", pod("web"))
    loaded = load(path)
    assert loaded.problems == []
    (doc,) = loaded.documents
    assert (doc.key, doc.file, doc.document) == (pod_key("web"), str(path), 1)


def test_a_file_named_explicitly_is_read_whatever_its_suffix(tmp_path: Path) -> None:
    path = write(tmp_path, "web.manifest", pod("web"))
    assert keys(load(path)) == [pod_key("web")]


def test_a_folder_is_read_file_by_file_in_name_order(tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", pod("bravo"))
    write(tmp_path, "a.yaml", pod("alpha"))
    loaded = load(tmp_path)
    assert loaded.problems == []
    assert [(d.key.name, Path(d.file).name) for d in loaded.documents] == [
        ("alpha", "a.yaml"),
        ("bravo", "b.yaml"),
    ]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("web.yaml", id="yaml"),
        pytest.param("web.yml", id="yml"),
        pytest.param("web.json", id="json"),
    ],
)
def test_a_folder_reads_each_manifest_suffix(tmp_path: Path, name: str) -> None:
    write(tmp_path, name, pod("web"))
    loaded = load(tmp_path)
    assert loaded.problems == []
    assert keys(loaded) == [pod_key("web")]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(".hidden.yaml", id="dotfile"),
        pytest.param(".web.yaml.swp", id="editor-swap-file"),
        pytest.param("web.yaml~", id="editor-backup"),
        pytest.param("web.yaml.bak", id="bak"),
        pytest.param("#web.yaml#", id="emacs-autosave"),
        pytest.param("notes.txt", id="txt"),
        pytest.param("README", id="no-suffix"),
    ],
)
def test_a_folder_skips_dotfiles_backups_and_other_files(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("this: [is not read")
    write(tmp_path, "web.yaml", pod("web"))
    loaded = load(tmp_path)
    assert loaded.problems == []
    assert keys(loaded) == [pod_key("web")]
    assert loader.manifest_files(str(tmp_path)) == [str(tmp_path / "web.yaml")]


def test_a_folder_does_not_descend_into_subfolders_even_one_named_like_a_manifest(
    tmp_path: Path,
) -> None:
    for sub in ("nested", "looks.yaml"):
        (tmp_path / sub).mkdir()
        write(tmp_path / sub, "other.yaml", pod("other"))
    write(tmp_path, "web.yaml", pod("web"))
    assert keys(load(tmp_path)) == [pod_key("web")]


def test_an_empty_folder_holds_nothing_and_is_no_problem(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    assert (loaded.documents, loaded.problems, loaded.complete) == ([], [], True)


def test_a_path_that_does_not_exist_is_a_problem_and_makes_the_load_incomplete(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "gone.yaml"
    good = write(tmp_path, "web.yaml", pod("web"))
    loaded = load(missing, good)
    assert where(loaded.problems) == [(str(missing), None, "")]
    assert "no such file or folder" in loaded.problems[0].message
    assert loaded.complete is False
    assert keys(loaded) == [pod_key("web")]
    with pytest.raises(FileNotFoundError):
        loader.manifest_files(str(missing))


# --- documents --------------------------------------------------------------------------


def test_a_multi_document_yaml_file_numbers_its_documents_from_one(tmp_path: Path) -> None:
    path = write(tmp_path, "all.yaml", pod("web"), container("web-log"), pod("db"))
    loaded = load(path)
    assert loaded.problems == []
    assert [(d.key.name, d.document) for d in loaded.documents] == [
        ("web", 1),
        ("web-log", 2),
        ("db", 3),
    ]


def test_empty_yaml_documents_are_skipped_but_still_counted(tmp_path: Path) -> None:
    path = tmp_path / "sparse.yaml"
    path.write_text("---\n---\n# only a comment\n---\n" + yaml.safe_dump(pod("web")))
    loaded = load(path)
    assert loaded.problems == []
    assert [(d.key.name, d.document) for d in loaded.documents] == [("web", 3)]


def test_a_list_kind_yields_each_item_at_the_list_documents_index(tmp_path: Path) -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": [pod("web"), container("web-log")]}
    path = write(tmp_path, "list.yaml", pod("first"), items)
    loaded = load(path)
    assert loaded.problems == []
    assert [(d.key.name, d.document) for d in loaded.documents] == [
        ("first", 1),
        ("web", 2),
        ("web-log", 2),
    ]


def test_a_problem_in_a_list_item_names_the_item_and_spares_the_others(
    tmp_path: Path,
) -> None:
    items = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [pod("web"), container("web-log", imagePullPolicy="Sometimes")],
    }
    path = write(tmp_path, "list.yaml", items)
    loaded = load(path)
    assert where(loaded.problems) == [(str(path), 1, "items[1].spec.imagePullPolicy")]
    assert keys(loaded) == [pod_key("web")]


def test_a_list_whose_items_are_not_a_list_is_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "list.yaml", {"apiVersion": "v1", "kind": "List", "items": "web"})
    loaded = load(path)
    assert where(loaded.problems) == [(str(path), 1, "items")]
    assert str(path) in loaded.incomplete


def test_a_pod_without_a_node_name_is_given_this_nodes_name(tmp_path: Path) -> None:
    loaded = load(write(tmp_path, "web.yaml", pod("web")), node_name="node-b")
    assert loaded.documents[0].obj["spec"]["nodeName"] == "node-b"


def test_a_pod_naming_this_node_is_accepted(tmp_path: Path) -> None:
    loaded = load(write(tmp_path, "web.yaml", pod("web", nodeName=NODE)))
    assert (loaded.problems, keys(loaded)) == ([], [pod_key("web")])


def test_documents_are_defaulted_as_the_api_server_would(tmp_path: Path) -> None:
    template = {"name": "app", "image": "registry.example.com/busybox:1.36"}
    path = write(tmp_path, "all.yaml", pod("web", containers=[template]), container("web-log"))
    web, log = (d.obj for d in load(path).documents)
    assert web["metadata"]["namespace"] == "default"
    assert web["spec"]["imagePullPolicy"] == "IfNotPresent"
    assert web["spec"]["attempt"] == 0
    assert web["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert log["spec"]["imagePullPolicy"] == "IfNotPresent"
    assert log["spec"]["state"] == "Started"


def test_server_set_fields_and_status_copied_from_kubectl_are_dropped(tmp_path: Path) -> None:
    copied = pod("web", namespace="apps")
    copied["metadata"].update(
        uid="0b7e9f5e-0000-0000-0000-000000000000",
        resourceVersion="42",
        generation=7,
        creationTimestamp="2024-01-01T00:00:00Z",
        managedFields=[{"manager": "kubectl"}],
    )
    copied["status"] = {"phase": "Ready"}
    loaded = load(write(tmp_path, "web.yaml", copied))
    assert loaded.problems == []
    obj = loaded.documents[0].obj
    assert obj["metadata"] == {"name": "web", "namespace": "apps"}
    assert "status" not in obj


# --- image pull secrets -----------------------------------------------------------------


def _string_data_secret() -> dict[str, Any]:
    secret = pull_secret()
    del secret["data"]
    secret["stringData"] = {".dockerconfigjson": json.dumps(docker_config())}
    return secret


def _dockercfg_secret() -> dict[str, Any]:
    legacy = {"registry.example.com": {"auth": "dXNlcjpwdw=="}}
    return pull_secret(
        type="kubernetes.io/dockercfg",
        data={".dockercfg": base64.b64encode(json.dumps(legacy).encode()).decode()},
    )


@pytest.mark.parametrize(
    ("secret", "ident", "has_auths"),
    [
        pytest.param(pull_secret(), ("default", "pull"), True, id="dockerconfigjson-data"),
        pytest.param(_string_data_secret(), ("default", "pull"), True, id="stringData"),
        pytest.param(
            pull_secret(metadata={"name": "pull", "namespace": "apps"}),
            ("apps", "pull"),
            True,
            id="in-a-namespace",
        ),
        pytest.param(_dockercfg_secret(), ("default", "pull"), False, id="legacy-dockercfg"),
    ],
)
def test_an_image_pull_secret_is_accepted_as_a_docker_config(
    tmp_path: Path, secret: dict[str, Any], ident: tuple[str, str], has_auths: bool
) -> None:
    loaded = load(write(tmp_path, "pull.yaml", secret, pod("web")))
    assert loaded.problems == []
    assert list(loaded.secrets) == [ident]
    assert ("auths" in loaded.secrets[ident]) is has_auths
    assert keys(loaded) == [pod_key("web")]  # a secret is not a resource of its own


def test_an_image_pull_secret_in_json_is_accepted(tmp_path: Path) -> None:
    loaded = load(write(tmp_path, "pull.json", pull_secret()))
    assert (loaded.problems, loaded.secrets) == ([], {("default", "pull"): docker_config()})


def _encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("secret", "field", "fragment"),
    [
        pytest.param(pull_secret(apiVersion="v2"), "apiVersion", "Unsupported value", id="api"),
        pytest.param(pull_secret(type="Opaque"), "type", "image pull secrets", id="opaque"),
        pytest.param(pull_secret(metadata={}), "metadata.name", "Required value", id="no-name"),
        pytest.param(
            pull_secret(data={"password": _encoded(SECRET_WORD)}),
            'data[".dockerconfigjson"]',
            "Required value",
            id="no-config-key",
        ),
        pytest.param(
            pull_secret(data={".dockerconfigjson": f"{SECRET_WORD}!!"}),
            'data[".dockerconfigjson"]',
            "not base64",
            id="not-base64",
        ),
        pytest.param(
            pull_secret(data={".dockerconfigjson": _encoded(f"{{auths: {SECRET_WORD}")}),
            'data[".dockerconfigjson"]',
            "not JSON",
            id="not-json",
        ),
        pytest.param(
            pull_secret(data={".dockerconfigjson": _encoded(json.dumps({"pw": SECRET_WORD}))}),
            'data[".dockerconfigjson"]',
            "expected a docker config",
            id="no-auths",
        ),
        pytest.param(
            pull_secret(stringData={".dockerconfigjson": f"[{json.dumps(SECRET_WORD)}]"}),
            'stringData[".dockerconfigjson"]',
            "expected a docker config",
            id="stringData-a-list",
        ),
    ],
)
def test_a_bad_image_pull_secret_is_located_without_showing_its_content(
    tmp_path: Path, secret: dict[str, Any], field: str, fragment: str
) -> None:
    path = write(tmp_path, "pull.yaml", pod("web"), secret)
    loaded = load(path)
    assert where(loaded.problems) == [(str(path), 2, field)]
    assert fragment in loaded.problems[0].message
    assert SECRET_WORD not in str(loaded.problems[0])
    assert _encoded(SECRET_WORD) not in str(loaded.problems[0])
    assert loaded.secrets == {}
    assert keys(loaded) == [pod_key("web")]


def test_a_secret_defined_twice_keeps_the_first_and_reports_the_second(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", pull_secret())
    second = write(tmp_path, "b.yaml", pull_secret(type="kubernetes.io/dockerconfigjson"))
    loaded = load(first, second)
    assert where(loaded.problems) == [(str(second), 1, "metadata.name")]
    assert SECRET_WORD not in str(loaded.problems[0])
    assert list(loaded.secrets) == [("default", "pull")]


# --- bad input: located by file, document and field ------------------------------------


GOOD = yaml.safe_dump(pod("good"))


@pytest.mark.parametrize(
    ("bad", "field", "fragment"),
    [
        pytest.param("spec: [unclosed\n", "", "not valid YAML", id="malformed-yaml"),
        pytest.param("- a list\n- not an object\n", "", "must be an object", id="a-list"),
        pytest.param("just a string\n", "", "must be an object", id="a-string"),
        pytest.param("42\n", "", "must be an object", id="a-number"),
        pytest.param(
            yaml.safe_dump({**pod("web"), "kind": "StoragePodd"}),
            "kind",
            'Unsupported value: "StoragePodd"',
            id="unknown-kind",
        ),
        pytest.param(
            yaml.safe_dump({"apiVersion": API, "metadata": {"name": "web"}, "spec": {}}),
            "kind",
            "Required value",
            id="missing-kind",
        ),
        pytest.param(
            yaml.safe_dump({**pod("web"), "apiVersion": "podstore.dev/v1"}),
            "apiVersion",
            'Unsupported value: "podstore.dev/v1"',
            id="unknown-api-version",
        ),
        pytest.param(
            yaml.safe_dump(pod("web", imagePullPolicy="Sometimes")),
            "spec.imagePullPolicy",
            'Unsupported value: "Sometimes"',
            id="enum",
        ),
        pytest.param(
            yaml.safe_dump(
                pod(
                    "web",
                    containers=[{"name": "app", "image": "x", "imagePullPolicy": "Sometimes"}],
                )
            ),
            "spec.containers[0].imagePullPolicy",
            'Unsupported value: "Sometimes"',
            id="enum-in-a-template",
        ),
        pytest.param(
            yaml.safe_dump(container("web-log", imagePulPolicy="Always")),
            "spec.imagePulPolicy",
            "unknown field",
            id="unknown-field",
        ),
        pytest.param(
            yaml.safe_dump({**pod("web"), "metadata": {"name": "web", "colour": "red"}}),
            "metadata.colour",
            "unknown field",
            id="unknown-metadata-field",
        ),
        pytest.param(
            yaml.safe_dump({**container("web-log"), "spec": {"podName": "web"}}),
            "spec.image",
            "Required value",
            id="missing-required-field",
        ),
        pytest.param(
            yaml.safe_dump(pod("Web_Server")),
            "metadata.name",
            "should match",
            id="bad-name",
        ),
        pytest.param(
            yaml.safe_dump(pod("web", nodeName="node-b")),
            "spec.nodeName",
            "is not this node",
            id="another-node",
        ),
    ],
)
def test_a_bad_document_is_located_and_the_good_one_before_it_still_loads(
    tmp_path: Path, bad: str, field: str, fragment: str
) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(f"{GOOD}---\n{bad}")
    loaded = load(path)
    assert where(loaded.problems) == [(str(path), 2, field)]
    assert fragment in loaded.problems[0].message
    assert keys(loaded) == [pod_key("good")]


def test_a_schema_error_names_the_field_the_way_the_problem_prints(tmp_path: Path) -> None:
    path = write(tmp_path, "web.yaml", pod("good"), pod("web", imagePullPolicy="Sometimes"))
    (problem,) = load(path).problems
    assert str(problem).startswith(f"{path}, document 2: spec.imagePullPolicy: Unsupported value")


def test_malformed_yaml_ends_the_file_and_keeps_what_it_held_before(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    after = yaml.safe_dump(pod("after"))
    path.write_text(f"{GOOD}---\nspec: [unclosed\n---\n{after}")
    loaded = load(path)
    assert where(loaded.problems) == [(str(path), 2, "")]
    assert "line" in loaded.problems[0].message
    assert keys(loaded) == [pod_key("good")]
    assert loaded.keeps(pod_key("after"), str(path))


def test_malformed_json_is_located_and_other_files_still_load(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"apiVersion": "podstore.dev/v1alpha1", "kind": ')
    write(tmp_path, "web.json", pod("web"))
    loaded = load(tmp_path)
    assert where(loaded.problems) == [(str(broken), 1, "")]
    assert "not valid JSON" in loaded.problems[0].message
    assert keys(loaded) == [pod_key("web")]
    assert loaded.incomplete == {str(broken)}


def test_every_bad_document_of_a_file_is_reported_not_only_the_first(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "many.yaml",
        pod("one", imagePullPolicy="Sometimes"),
        pod("good"),
        container("three", colour="red"),
        {**pod("four"), "kind": "Pod"},
    )
    loaded = load(path)
    assert where(loaded.problems) == [
        (str(path), 1, "spec.imagePullPolicy"),
        (str(path), 3, "spec.colour"),
        (str(path), 4, "kind"),
    ]
    assert keys(loaded) == [pod_key("good")]


@pytest.mark.parametrize(
    ("bad", "kept"),
    [
        pytest.param(pod("web", imagePullPolicy="Sometimes"), [pod_key("web")], id="schema"),
        pytest.param(pod("web", nodeName="node-b"), [pod_key("web")], id="another-node"),
        pytest.param(
            {**pod("web"), "kind": "StoragePodd"},
            [pod_key("web"), Key("StorageContainer", "default", "web")],
            id="misspelt-kind",
        ),
    ],
)
def test_a_rejected_document_keeps_the_resource_it_names(
    tmp_path: Path, bad: dict[str, Any], kept: list[Key]
) -> None:
    path = write(tmp_path, "web.yaml", bad)
    loaded = load(path)
    assert sorted(loaded.keep, key=str) == sorted(kept, key=str)
    assert all(loaded.keeps(key, "elsewhere.yaml") for key in kept)
    assert str(path) not in loaded.incomplete


def test_a_rejected_document_without_a_name_keeps_the_whole_file(tmp_path: Path) -> None:
    path = write(tmp_path, "web.yaml", {**pod("web"), "metadata": {}})
    loaded = load(path)
    assert where(loaded.problems) == [(str(path), 1, "metadata.name")]
    assert loaded.incomplete == {str(path)}


# --- duplicate names --------------------------------------------------------------------


def test_a_name_used_twice_in_one_file_is_reported_at_both_and_applied_at_neither(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "dup.yaml", pod("web"), pod("good"), pod("web", attempt=1))
    loaded = load(path)
    assert where(loaded.problems) == [
        (str(path), 1, "metadata.name"),
        (str(path), 3, "metadata.name"),
    ]
    assert f"also defined in {path}, document 3" in loaded.problems[0].message
    assert f"also defined in {path}, document 1" in loaded.problems[1].message
    assert keys(loaded) == [pod_key("good")]
    assert loaded.keeps(pod_key("web"), str(path))


def test_a_name_used_in_two_files_is_reported_in_each(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", pod("web"))
    second = write(tmp_path, "b.yaml", pod("good"), pod("web"))
    loaded = load(tmp_path)
    assert sorted(where(loaded.problems)) == [
        (str(first), 1, "metadata.name"),
        (str(second), 2, "metadata.name"),
    ]
    messages = {p.file: p.message for p in loaded.problems}
    assert f"{second}, document 2" in messages[str(first)]
    assert f"{first}, document 1" in messages[str(second)]
    assert keys(loaded) == [pod_key("good")]


def test_a_name_clash_with_a_rejected_document_still_holds_both_back(tmp_path: Path) -> None:
    path = write(tmp_path, "dup.yaml", pod("web"), pod("web", imagePullPolicy="Sometimes"))
    loaded = load(path)
    assert (str(path), 1, "metadata.name") in where(loaded.problems)
    assert keys(loaded) == []


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(pod("web"), container("web"), id="other-kind"),
        pytest.param(pod("web"), pod("web", namespace="apps"), id="other-namespace"),
        pytest.param(
            pod("web", namespace="default"), pod("web", namespace="apps"), id="explicit-default"
        ),
    ],
)
def test_the_same_name_in_another_kind_or_namespace_is_no_clash(
    tmp_path: Path, first: dict[str, Any], second: dict[str, Any]
) -> None:
    loaded = load(write(tmp_path, "two.yaml", first, second))
    assert loaded.problems == []
    assert len(loaded.documents) == 2


def test_the_default_namespace_given_or_omitted_is_the_same_name(tmp_path: Path) -> None:
    path = write(tmp_path, "two.yaml", pod("web"), pod("web", namespace="default"))
    loaded = load(path)
    assert where(loaded.problems) == [
        (str(path), 1, "metadata.name"),
        (str(path), 2, "metadata.name"),
    ]


def test_a_name_used_twice_in_one_list_names_the_other_item(tmp_path: Path) -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": [pod("web"), pod("web", attempt=1)]}
    path = write(tmp_path, "list.yaml", items)
    loaded = load(path)
    assert keys(loaded) == []
    assert [p.field for p in loaded.problems] == [
        "items[0].metadata.name",
        "items[1].metadata.name",
    ]
    for problem in loaded.problems:
        assert "also defined in ;" not in problem.message
        assert f"{path}, document 1" in problem.message
