"""The sandbox API server's strategic merge patch: the rules `kubectl apply` and
`kubectl patch` rely on, on the objects they send."""

from __future__ import annotations

from typing import Any

from azpytest_sandbox.kubestore import strategic_merge

POD_SPEC: dict[str, Any] = {
    "containers": [
        {"name": "web", "image": "nginx:1.27", "env": [{"name": "A", "value": "1"}]},
        {"name": "sidecar", "image": "busybox:1.36"},
    ],
    "nodeSelector": {"pool": "a"},
}


def test_named_lists_merge_item_by_item() -> None:
    patch = {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"name": "web", "env": [{"name": "B", "value": "2"}]}],
    }
    assert strategic_merge(POD_SPEC, patch) == {
        "containers": [
            {
                "name": "web",
                "image": "nginx:1.27",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            },
            {"name": "sidecar", "image": "busybox:1.36"},
        ],
        "nodeSelector": {"pool": "a"},
    }


def test_patch_delete_removes_an_item_and_null_removes_a_field() -> None:
    patch = {"containers": [{"$patch": "delete", "name": "sidecar"}], "nodeSelector": None}
    assert strategic_merge(POD_SPEC, patch) == {"containers": [POD_SPEC["containers"][0]]}


def test_new_items_are_appended_and_other_lists_replaced() -> None:
    merged = strategic_merge(
        {"containers": [{"name": "a", "args": ["x", "y"]}]},
        {"containers": [{"name": "a", "args": ["z"]}, {"name": "b", "image": "i"}]},
    )
    assert merged == {"containers": [{"name": "a", "args": ["z"]}, {"name": "b", "image": "i"}]}
