"""The chart's model values: the model baked into the worker image (default), a model
repository on a volume, or an OCI image holding only the model copied in by an init
container. Rendered by the same real Helm as tests/test_chart.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.test_chart import (
    CHART,
    KUBERNETES_VERSION,
    config_of,
    container,
    only,
    run_helm,
)
from worker.settings import WorkerSettings

Obj = dict[str, Any]

ON_A_VOLUME: Obj = {
    "worker": {
        "models": {
            "source": "volume",
            "volume": {"persistentVolumeClaim": {"claimName": "models", "readOnly": True}},
            "path": "gestures",
            "pollSeconds": 30,
        }
    }
}
FROM_AN_IMAGE: Obj = {
    "worker": {
        "models": {
            "source": "initImage",
            "initImage": {"repository": "registry.example.com/gestures", "tag": "4"},
            "versionPolicy": "4",
        }
    }
}


def worker_settings_of(objects: list[Obj]) -> WorkerSettings:
    config = config_of(objects, "worker")
    return WorkerSettings.model_validate(
        {k.removeprefix("MEMELEARNING_WORKER_").lower(): v for k, v in config.items()}
    )


def test_by_default_the_worker_serves_the_model_in_its_image(
    render: Callable[[Obj], list[Obj]],
) -> None:
    objects = render({})
    pod = only(objects, "Deployment", "worker")["spec"]["template"]["spec"]

    assert "MEMELEARNING_WORKER_MODEL_DIR" not in config_of(objects, "worker")
    assert "initContainers" not in pod
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    settings = worker_settings_of(objects)
    assert (settings.model_version_policy, settings.control_exchange) == (
        "latest",
        "memelearning.control",
    )


def test_a_repository_on_a_volume_is_mounted_read_only_and_served(
    render: Callable[[Obj], list[Obj]],
) -> None:
    objects = render(ON_A_VOLUME)
    deployment = only(objects, "Deployment", "worker")
    pod = deployment["spec"]["template"]["spec"]

    volume = next(v for v in pod["volumes"] if v["name"] == "models")
    assert volume["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in container(deployment)[
        "volumeMounts"
    ]
    settings = worker_settings_of(objects)
    assert (str(settings.model_dir), settings.model_poll_s) == ("/models/gestures", 30.0)


def test_a_model_image_is_copied_in_by_a_hardened_init_container(
    render: Callable[[Obj], list[Obj]],
) -> None:
    objects = render(FROM_AN_IMAGE)
    deployment = only(objects, "Deployment", "worker")
    pod = deployment["spec"]["template"]["spec"]

    (init,) = pod["initContainers"]
    assert init["image"] == "registry.example.com/gestures:4"
    assert init["command"] == ["cp", "-R", "/models/.", "/model-copy/"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"name": "models", "mountPath": "/model-copy"} in init["volumeMounts"]
    volume = next(v for v in pod["volumes"] if v["name"] == "models")
    assert volume == {"name": "models", "emptyDir": {"sizeLimit": "2Gi"}}
    # the worker image stays the same: a new model is a new model image tag
    assert container(deployment)["image"].endswith(":0.1.0")
    settings = worker_settings_of(objects)
    assert (str(settings.model_dir), settings.model_version_policy) == ("/models", "4")


@pytest.mark.parametrize("values", [ON_A_VOLUME, FROM_AN_IMAGE], ids=["volume", "init-image"])
def test_the_model_sources_render_valid_kubernetes_objects(
    render: Callable[[Obj], list[Obj]], values: Obj
) -> None:
    for obj in render(values):
        if not obj["apiVersion"].startswith(("keda.sh/", "monitoring.")):
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ({"source": "volume"}, "worker.models.volume is required"),
        ({"source": "initImage"}, "worker.models.initImage.repository and .tag are required"),
        ({"source": "s3"}, "source"),
        ({"versionPolicy": "newest"}, "versionPolicy"),
        ({"path": "../etc"}, "path"),
    ],
    ids=["volume-missing", "image-missing", "unknown-source", "policy", "path-escapes"],
)
def test_model_values_that_cannot_work_are_refused(helm: Path, models: Obj, message: str) -> None:
    result = run_helm(helm, "template", "ml", str(CHART), values={"worker": {"models": models}})

    assert result.returncode != 0
    assert message in result.stderr
