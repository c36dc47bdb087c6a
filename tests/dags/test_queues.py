"""Queues per site: the inventory's optional ``queue`` per host reaches every task of that host's chain
(``build_protection_chain(queue=...)``), and a host without one keeps the default queue."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from airflow_hyperv.authoring.inventory import InventoryError, parse
from airflow_hyperv.example_dags import EXAMPLE_DAGS
from tests.support.dags import import_file

SHIPPED = EXAMPLE_DAGS / "inventory" / "nightly.yaml"


def host(**extra: Any) -> dict[str, Any]:
    return {"name": "hv-01", "conn_id": "hyperv_hv_01", "vms": [{"name": "dc-01"}], **extra}


def test_a_host_queue_is_read_and_optional() -> None:
    inventory = parse({"hosts": [host(queue="hyperv-site-a"), {**host(), "name": "hv-02"}]})
    assert inventory.host("hv-01").queue == "hyperv-site-a"
    assert inventory.host("hv-01").task_options == {"queue": "hyperv-site-a"}
    assert inventory.host("hv-02").queue is None and inventory.host("hv-02").task_options == {}


@pytest.mark.parametrize("bad", ["", "site a", "-site", "site,b", 5, ["a"], "x" * 201])
def test_a_queue_that_is_no_queue_name_is_refused_at_parse_time(bad: Any) -> None:
    with pytest.raises(InventoryError, match=r"hosts\[0\]: queue"):
        parse({"hosts": [host(queue=bad)]})


def test_the_shipped_inventory_puts_each_site_on_its_own_queue() -> None:
    queues = {h["name"]: h.get("queue") for h in yaml.safe_load(SHIPPED.read_text())["hosts"]}
    assert queues == {"hv-01": "hyperv-site-a", "hv-02": "hyperv-site-b"}


def test_every_task_of_a_host_runs_on_its_queue_and_the_report_on_the_default(tmp_path, monkeypatch) -> None:
    inventory = yaml.safe_load(SHIPPED.read_text())
    del inventory["hosts"][1]["queue"]  # hv-02 without a queue: the default one
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump(inventory))
    monkeypatch.setenv("AIRFLOW_HYPERV_INVENTORY", str(path))
    dag = import_file(EXAMPLE_DAGS / "nightly_checkpoint.py", "nightly_queues_under_test").dag

    from airflow.sdk import conf

    default = conf.get("operators", "default_queue")
    by_prefix = {"host_hv_01": "hyperv-site-a", "host_hv_02": default}
    seen: dict[str, set[str]] = {}
    for task in dag.tasks:
        prefix = task.task_id.split(".")[0].removesuffix("_vms")
        seen.setdefault(prefix, set()).add(task.queue)
    assert seen.pop("report") == {default}, seen
    assert seen == {prefix: {queue} for prefix, queue in by_prefix.items()}, seen
    chain = [t.task_id.split(".", 1)[1] for t in dag.tasks if t.task_id.startswith("host_hv_01.")]
    assert {"verify", "choose", "production_checkpoint", "export_production", "merge", "cleaned_up"} <= set(
        chain
    ), chain
