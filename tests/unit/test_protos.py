"""The generated containerd API code: up to date with vendor_protos, and the
wire facts it must agree on with containerd (names, field numbers, enums)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from contd_trio._proto.containerd.events import container_pb2 as container_events
from contd_trio._proto.containerd.events import namespace_pb2 as namespace_events
from contd_trio._proto.containerd.events import task_pb2 as task_events
from contd_trio._proto.containerd.runc.options import oci_pb2
from contd_trio._proto.containerd.services.containers.v1 import containers_grpc, containers_pb2
from contd_trio._proto.containerd.services.events.v1 import events_grpc, events_pb2
from contd_trio._proto.containerd.services.namespaces.v1 import namespace_grpc, namespace_pb2
from contd_trio._proto.containerd.services.tasks.v1 import tasks_grpc, tasks_pb2
from contd_trio._proto.containerd.services.version.v1 import version_grpc, version_pb2
from contd_trio._proto.containerd.types import mount_pb2
from contd_trio._proto.containerd.types.task import task_pb2

ROOT = Path(__file__).resolve().parents[2]


def numbers(message) -> dict[str, int]:
    return {field.name: field.number for field in message.DESCRIPTOR.fields}


def test_generated_code_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "service", "full_name", "methods"),
    [
        (
            containers_pb2,
            "Containers",
            "containerd.services.containers.v1.Containers",
            {"Get", "List", "Create", "Update", "Delete"},
        ),
        (
            tasks_pb2,
            "Tasks",
            "containerd.services.tasks.v1.Tasks",
            {
                "Create",
                "Start",
                "Delete",
                "DeleteProcess",
                "Get",
                "List",
                "Kill",
                "Exec",
                "ListPids",
                "Wait",
                "Update",
            },
        ),
        (events_pb2, "Events", "containerd.services.events.v1.Events", {"Publish", "Subscribe"}),
        (
            namespace_pb2,
            "Namespaces",
            "containerd.services.namespaces.v1.Namespaces",
            {"Get", "List", "Create"},
        ),
        (version_pb2, "Version", "containerd.services.version.v1.Version", {"Version"}),
    ],
)
def test_service_names(module, service, full_name, methods):
    descriptor = module.DESCRIPTOR.services_by_name[service]
    assert descriptor.full_name == full_name
    assert {m.name for m in descriptor.methods} == methods


@pytest.mark.parametrize(
    ("stub", "method", "path"),
    [
        (tasks_grpc.TasksStub, "Create", "/containerd.services.tasks.v1.Tasks/Create"),
        (tasks_grpc.TasksStub, "ListPids", "/containerd.services.tasks.v1.Tasks/ListPids"),
        (events_grpc.EventsStub, "Subscribe", "/containerd.services.events.v1.Events/Subscribe"),
        (version_grpc.VersionStub, "Version", "/containerd.services.version.v1.Version/Version"),
        (namespace_grpc.NamespacesStub, "List", "/containerd.services.namespaces.v1.Namespaces/List"),
        (containers_grpc.ContainersStub, "Get", "/containerd.services.containers.v1.Containers/Get"),
    ],
)
def test_grpclib_paths(stub, method, path):
    # The HTTP/2 path grpclib sends; the stub's channel is never used.
    assert getattr(stub(None), method).name == path


def test_streaming_shape():
    subscribe = events_pb2.DESCRIPTOR.services_by_name["Events"].methods_by_name["Subscribe"]
    assert subscribe.server_streaming and not subscribe.client_streaming
    assert subscribe.output_type.full_name == "containerd.services.events.v1.Envelope"


def test_message_full_names():
    # Full names are what containerd puts in Any.type_url for events.
    assert task_events.TaskExit.DESCRIPTOR.full_name == "containerd.events.TaskExit"
    runtime = container_events.ContainerCreate.Runtime
    assert runtime.DESCRIPTOR.full_name == "containerd.events.ContainerCreate.Runtime"
    assert namespace_events.NamespaceCreate.DESCRIPTOR.full_name == "containerd.events.NamespaceCreate"
    assert task_pb2.Process.DESCRIPTOR.full_name == "containerd.v1.types.Process"
    assert mount_pb2.Mount.DESCRIPTOR.full_name == "containerd.types.Mount"


def test_event_field_numbers():
    assert numbers(task_events.TaskExit) == {
        "container_id": 1,
        "id": 2,
        "pid": 3,
        "exit_status": 4,
        "exited_at": 5,
    }
    assert numbers(task_events.TaskDelete) == {
        "container_id": 1,
        "pid": 2,
        "exit_status": 3,
        "exited_at": 4,
        "id": 5,
    }
    assert numbers(task_events.TaskCreate) == {
        "container_id": 1,
        "bundle": 2,
        "rootfs": 3,
        "io": 4,
        "checkpoint": 5,
        "pid": 6,
    }
    assert numbers(task_events.TaskStart) == {"container_id": 1, "pid": 2}
    assert numbers(task_events.TaskOOM) == {"container_id": 1}
    assert numbers(task_events.TaskExecAdded) == {"container_id": 1, "exec_id": 2}
    assert numbers(task_events.TaskExecStarted) == {"container_id": 1, "exec_id": 2, "pid": 3}
    assert numbers(container_events.ContainerCreate) == {"id": 1, "image": 2, "runtime": 3}
    assert numbers(container_events.ContainerDelete) == {"id": 1}
    assert numbers(namespace_events.NamespaceCreate) == {"name": 1, "labels": 2}


def test_envelope_field_numbers():
    assert numbers(events_pb2.Envelope) == {"timestamp": 1, "namespace": 2, "topic": 3, "event": 4}
    assert numbers(events_pb2.SubscribeRequest) == {"filters": 1}


def test_create_task_request_field_numbers():
    assert numbers(tasks_pb2.CreateTaskRequest) == {
        "container_id": 1,
        "rootfs": 3,
        "stdin": 4,
        "stdout": 5,
        "stderr": 6,
        "terminal": 7,
        "options": 9,
        "runtime_path": 10,
    }
    rootfs = tasks_pb2.CreateTaskRequest.DESCRIPTOR.fields_by_name["rootfs"]
    assert rootfs.message_type.full_name == "containerd.types.Mount"
    assert numbers(mount_pb2.Mount) == {"type": 1, "source": 2, "target": 3, "options": 4}


def test_other_task_messages():
    assert numbers(tasks_pb2.ExecProcessRequest) == {
        "container_id": 1,
        "stdin": 2,
        "stdout": 3,
        "stderr": 4,
        "terminal": 5,
        "spec": 6,
        "exec_id": 7,
    }
    assert numbers(tasks_pb2.KillRequest) == {"container_id": 1, "exec_id": 2, "signal": 3, "all": 4}
    assert numbers(tasks_pb2.DeleteResponse) == {"id": 1, "pid": 2, "exit_status": 3, "exited_at": 4}
    assert numbers(tasks_pb2.WaitResponse) == {"exit_status": 1, "exited_at": 2}
    assert numbers(task_pb2.ProcessInfo) == {"pid": 1, "info": 2}
    # The runc shim's info of an exec process, typed by its full name.
    assert oci_pb2.ProcessDetails.DESCRIPTOR.full_name == "containerd.runc.v1.ProcessDetails"
    assert numbers(oci_pb2.ProcessDetails) == {"exec_id": 1}
    assert numbers(tasks_pb2.UpdateTaskRequest) == {"container_id": 1, "resources": 2, "annotations": 3}
    resources = tasks_pb2.UpdateTaskRequest.DESCRIPTOR.fields_by_name["resources"]
    assert resources.message_type.full_name == "google.protobuf.Any"


def test_container_field_numbers():
    fields = numbers(containers_pb2.Container)
    assert fields == {
        "id": 1,
        "labels": 2,
        "image": 3,
        "runtime": 4,
        "spec": 5,
        "snapshotter": 6,
        "snapshot_key": 7,
        "created_at": 8,
        "updated_at": 9,
        "extensions": 10,
        "sandbox": 11,
    }
    assert numbers(containers_pb2.Container.Runtime) == {"name": 1, "options": 2}
    assert numbers(containers_pb2.UpdateContainerRequest) == {"container": 1, "update_mask": 2}


def test_process_and_status():
    assert numbers(task_pb2.Process) == {
        "container_id": 1,
        "id": 2,
        "pid": 3,
        "status": 4,
        "stdin": 5,
        "stdout": 6,
        "stderr": 7,
        "terminal": 8,
        "exit_status": 9,
        "exited_at": 10,
    }
    status = task_pb2.DESCRIPTOR.enum_types_by_name["Status"]
    assert status.full_name == "containerd.v1.types.Status"
    assert {v.name: v.number for v in status.values} == {
        "UNKNOWN": 0,
        "CREATED": 1,
        "RUNNING": 2,
        "STOPPED": 3,
        "PAUSED": 4,
        "PAUSING": 5,
    }


def test_namespace_and_version_messages():
    assert numbers(namespace_pb2.Namespace) == {"name": 1, "labels": 2}
    assert numbers(version_pb2.VersionResponse) == {"version": 1, "revision": 2}


def test_wire_round_trip_of_a_task_exit():
    # Bytes as containerd's Go encoder writes them: fields in number order.
    event = task_events.TaskExit(container_id="c", id="c", pid=7, exit_status=1)
    event.exited_at.FromSeconds(1)
    assert event.SerializeToString() == b"\n\x01c\x12\x01c\x18\x07\x20\x01\x2a\x02\x08\x01"
