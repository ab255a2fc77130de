#!/usr/bin/env python3
"""Drives AEnvironment's released Python SDK and `aenv` CLI, unchanged, against a running berth.

berth must listen on port 8080 and its MCP gateway on port 8081 of BERTH_HOST (the SDK keeps
only the host of its URL and forces those ports). The Envs run berth's test image
`berth-test/aenv-server:latest`, which serves AEnvironment's in-sandbox HTTP contract on 8081.
Prints one PASS line per check; exits non-zero at the first failure.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import aenv as aenv_sdk
from aenv import Environment

HOST = os.environ.get("BERTH_HOST", "127.0.0.2")
API = f"http://{HOST}:8080"
IMAGE = "berth-test/aenv-server:latest"
SUFFIX = os.environ.get("BERTH_SDK_SUFFIX", str(os.getpid()))
# The platform team's key registers the Envs; the SDK and `aenv` run with AENV_API_KEY, a
# member's key, as a user of the platform would.
ADMIN_KEY = os.environ.get("BERTH_ADMIN_KEY")


def fail(message):
    print(f"FAIL {message}", flush=True)
    sys.exit(1)


def check(condition, what, detail=""):
    if not condition:
        fail(f"{what}: {detail}")
    print(f"PASS {what}", flush=True)


def call(method, path, body=None):
    """One request to berth's API: (HTTP status, parsed JSON or None)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{API}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if ADMIN_KEY:
        request.add_header("Authorization", f"Bearer {ADMIN_KEY}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text.decode(errors="replace")


def eventually(probe, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    return None


def register(name, deploy_config):
    status, body = call(
        "POST",
        "/env/",
        {
            "name": name,
            "version": "1.0.0",
            "description": "berth's SDK compatibility check",
            "artifacts": [{"type": "image", "content": IMAGE}],
            "deployConfig": deploy_config,
        },
    )
    check(status == 200 and body["data"] is True, f"registered Env {name}@1.0.0", body)


def sandbox_env(instance_id):
    """The main process's environment, read through berth's native exec."""
    status, result = call("POST", f"/v1/sandboxes/{instance_id}/exec", {"cmd": ["env"]})
    if status != 200:
        fail(f"exec env in {instance_id}: {status} {result}")
    return dict(line.split("=", 1) for line in result["stdout"].splitlines() if "=" in line)


async def sdk_flow(env_name, label):
    """Environment(...).initialize() → functions, reward, health through the gateway → release()."""
    env = Environment(
        f"{env_name}@1.0.0",
        aenv_url=f"http://{HOST}",
        ttl="5m",
        environment_variables={"GREETING": "hello"},
        arguments=None,
        timeout=30.0,
        startup_timeout=120.0,
        # The SDK sends it as `Authorization: Bearer` (the `aenv` CLI reads AENV_API_KEY itself).
        api_key=os.environ.get("AENV_API_KEY"),
    )
    await env.initialize()
    info = await env.get_env_info()
    instance_id = info["instance_id"]
    check(info["status"] == "Running" and info["ip"], f"{label}: the SDK waited until Running with an ip", info)

    functions = await env.list_functions()
    check("echo" in functions.get("functions", []), f"{label}: list_functions through the gateway", functions)
    echoed = await env.call_function("echo", {"text": "hi"})
    check(echoed.get("body") == {"text": "hi"}, f"{label}: call_function reaches the sandbox", echoed)
    headers = {key.lower() for key in echoed.get("headers", {})}
    check(
        "aenvcore-mcpproxy-url" not in headers,
        f"{label}: the gateway strips the routing header",
        headers,
    )
    reward = await env.call_reward({"score": 1})
    check(reward == {"reward": 1}, f"{label}: call_reward", reward)
    health = await env.check_health({})
    check(health.get("success") is True, f"{label}: check_health", health)

    variables = sandbox_env(instance_id)
    check(variables.get("GREETING") == "hello", f"{label}: environment_variables reach the process", variables)
    check(variables.get("envNAME") == env_name, f"{label}: the SDK's envNAME reaches the process", variables)

    await env.release()
    gone = eventually(lambda: call("GET", f"/env-instance/{instance_id}")[0] == 404, 30)
    check(gone, f"{label}: release() deletes the instance")
    return instance_id


def sdk_version():
    return tuple(int(part) for part in aenv_sdk.__version__.split(".")[:3])


def fetch(url):
    """A GET with no key at all: (HTTP status, body text)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


async def data_plane_free_flow(env_name):
    """SDK 0.1.7: enable_data_plane=False, mount_points onto a berth volume, presign_url."""
    volume = f"sdk-data-{SUFFIX}"
    status, body = call("POST", "/v1/volumes", {"name": volume, "owner": "sdk-check"})
    check(status == 201, "0.1.7: a berth volume for the SDK's owner", body)
    env = Environment(
        f"{env_name}@1.0.0",
        aenv_url=f"http://{HOST}",
        ttl="5m",
        timeout=30.0,
        startup_timeout=120.0,
        api_key=os.environ.get("AENV_API_KEY"),
        enable_data_plane=False,
        mount_points=[{"id": volume, "remote_dir": "/", "local_dir": "/workspace"}],
    )
    async with env:
        info = await env.get_env_info()
        instance_id = info["instance_id"]
        check(info["status"] == "Running", "0.1.7: enable_data_plane=False initializes without the gateway", info)
        try:
            await env.list_functions()
            fail("0.1.7: list_functions should be refused without a data plane")
        except Exception as error:  # the SDK's EnvironmentError
            check("enable_data_plane" in str(error), "0.1.7: the SDK refuses data-plane calls", error)
        status, result = call(
            "POST",
            f"/v1/sandboxes/{instance_id}/exec",
            {"cmd": ["sh", "-c", "echo kept > /workspace/f && cat /workspace/f"]},
        )
        check(status == 200 and result["stdout"] == "kept\n", "0.1.7: mount_points mount the volume", result)
        url = await env.presign_url(port=8081, expiration_time_in_minutes=2)
        check(url.startswith(f"http://{HOST}:8080/p/"), "0.1.7: presign_url answers a berth link", url)
        status, text = fetch(f"{url}health")
        check(status == 200, "0.1.7: the presigned link reaches the sandbox's port with no key", (status, text))
        status, _ = fetch(f"{url.rstrip('/')}x/health")
        check(status == 403, "0.1.7: a changed link is refused", status)
    gone = eventually(lambda: call("GET", f"/env-instance/{instance_id}")[0] == 404, 30)
    check(gone, "0.1.7: leaving the context releases the instance")
    # The container may still be going: the volume is free once it is.
    deleted = eventually(lambda: call("DELETE", f"/v1/volumes/{volume}?owner=sdk-check")[0] == 204, 30)
    check(deleted, "0.1.7: the volume is deleted once unmounted")


def aenv(*args):
    """Runs the `aenv` CLI; returns its stdout (fails the check on a non-zero exit)."""
    completed = subprocess.run(
        ["aenv", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "AENV_SYSTEM_URL": f"http://{HOST}"},
    )
    if completed.returncode != 0:
        fail(f"aenv {' '.join(args)} exited {completed.returncode}: {completed.stdout[-2000:]} {completed.stderr[-2000:]}")
    return completed.stdout


def instances_of(env_name):
    status, body = call("GET", f"/env-instance/{env_name}/list")
    if status != 200:
        fail(f"list instances of {env_name}: {status} {body}")
    return body["data"]


def services_of(env_name):
    status, body = call("GET", f"/env-service/{env_name}/list")
    if status != 200:
        fail(f"list services of {env_name}: {status} {body}")
    return body["data"]


def cli_flow(env_name):
    aenv("instance", "create", f"{env_name}@1.0.0", "--ttl", "5m", "-e", "FROM_CLI=1", "--keep-alive")
    created = instances_of(env_name)
    check(len(created) == 1 and created[0]["status"] == "Running", "aenv instance create --keep-alive", created)
    instance_id = created[0]["id"]
    check(instance_id in aenv("instance", "list", "--name", env_name, "-o", "json"), "aenv instance list shows it")
    check("Running" in aenv("instance", "get", instance_id, "-o", "json"), "aenv instance get reads it")
    check(sandbox_env(instance_id).get("FROM_CLI") == "1", "aenv instance create -e reaches the process")
    aenv("instance", "delete", instance_id, "-y")
    check(eventually(lambda: not instances_of(env_name), 30), "aenv instance delete removes it")

    aenv("service", "create", f"{env_name}@1.0.0", "-r", "2", "-p", "8081", "-e", "A=1")
    services = services_of(env_name)
    check(len(services) == 1, "aenv service create", services)
    service_id = services[0]["id"]
    running = eventually(
        lambda: [s for s in services_of(env_name) if s["status"] == "Running" and s["available_replicas"] == 2], 120
    )
    check(running, "the service runs 2 replicas", services_of(env_name))
    check(service_id in aenv("service", "list", "--name", env_name, "-o", "json"), "aenv service list shows it")
    aenv("service", "update", service_id, "-r", "1")
    scaled = eventually(
        lambda: [s for s in services_of(env_name) if s["status"] == "Running" and s["available_replicas"] == 1], 120
    )
    check(scaled, "aenv service update -r 1 scales it down", services_of(env_name))
    check("Running" in aenv("service", "get", service_id, "-o", "json"), "aenv service get reads it")
    aenv("service", "delete", service_id, "-y")
    check(eventually(lambda: not services_of(env_name), 60), "aenv service delete removes it")


def main():
    image_env = f"sdk-image-{SUFFIX}"
    compose_env = f"sdk-stack-{SUFFIX}"
    register(image_env, {"cpu": "500m", "memory": "64Mi", "ttl": "10m"})
    register(
        compose_env,
        {
            "cpu": "500m",
            "memory": "64Mi",
            "ttl": "10m",
            "composeFile": f"""
services:
  sidecar:
    image: berth-test/busybox:latest
    command: ["sh", "-c", "touch /ready; exec sleep 3600"]
    healthcheck:
      test: ["CMD-SHELL", "test -f /ready"]
      interval: 1s
      retries: 30
  agent:
    image: {IMAGE}
    labels:
      aenv.main: "true"
    depends_on:
      sidecar:
        condition: service_healthy
""",
        },
    )
    asyncio.run(sdk_flow(image_env, "image Env"))
    asyncio.run(sdk_flow(compose_env, "compose Env"))
    if sdk_version() >= (0, 1, 7):
        asyncio.run(data_plane_free_flow(image_env))
    cli_flow(image_env)
    for name in (image_env, compose_env):
        call("DELETE", f"/env/{name}/1.0.0")
    print(f"aenv-sdk {aenv_sdk.__version__}: all checks passed", flush=True)


if __name__ == "__main__":
    main()
