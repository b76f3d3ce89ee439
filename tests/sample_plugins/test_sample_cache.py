"""The cache plugins: memory always works; redis checks its server before writing anything."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flowhost_sample_memory_cache.plugin import MemoryCachePlugin
from flowhost_sample_redis_cache.ping import check_redis
from flowhost_sample_redis_cache.plugin import RedisCachePlugin
from redis_fake import FakeRedisServer

from flowhost_sdk import InvocationContext, PermanentError, TransientError

CACHE_FILES = ["app/cache.py", "app/routers/items.py", "tests/test_cache.py"]
START_REDIS = "Start Redis: redis-server --daemonize yes"

StartFakeRedis = Callable[..., FakeRedisServer]


def add_redis(ctx: InvocationContext, project: Path, url: str) -> RedisCachePlugin.Outputs:
    return RedisCachePlugin().invoke(
        RedisCachePlugin.Inputs(project_path=str(project), redis_url=url), ctx
    )


def test_memory_cache_writes_the_cache_layer(ctx: InvocationContext, project: Path) -> None:
    outputs = MemoryCachePlugin().invoke(MemoryCachePlugin.Inputs(project_path=str(project)), ctx)

    assert outputs.backend == "memory"
    assert outputs.files_changed == CACHE_FILES
    cache = (project / "app/cache.py").read_text("utf-8")
    assert "class MemoryCache" in cache and "def get_cache() -> Cache" in cache
    assert '@router.get("/{item_id}")' in (project / "app/routers/items.py").read_text("utf-8")


def test_memory_cache_refuses_a_folder_that_is_not_a_project(
    ctx: InvocationContext, tmp_path: Path
) -> None:
    with pytest.raises(PermanentError) as caught:
        MemoryCachePlugin().invoke(MemoryCachePlugin.Inputs(project_path=str(tmp_path)), ctx)
    assert caught.value.hint


def test_redis_cache_without_a_server_is_transient_with_the_hint(
    ctx: InvocationContext, project: Path, closed_port: int
) -> None:
    with pytest.raises(TransientError) as caught:
        add_redis(ctx, project, f"redis://127.0.0.1:{closed_port}/0")

    assert "connection refused" in str(caught.value)
    assert caught.value.hint == START_REDIS
    assert not (project / "app/cache.py").exists()
    assert "redis" not in (project / "requirements.txt").read_text("utf-8")


def test_redis_cache_default_url_is_local() -> None:
    assert RedisCachePlugin.Inputs(project_path="p").redis_url == "redis://127.0.0.1:6379/0"


def test_redis_cache_writes_the_cache_layer_once_redis_answers(
    ctx: InvocationContext, project: Path, fake_redis: StartFakeRedis
) -> None:
    server = fake_redis()
    outputs = add_redis(ctx, project, server.url)

    assert outputs.backend == "redis"
    assert outputs.files_changed == [*CACHE_FILES[:2], "requirements.txt", CACHE_FILES[2]]
    assert server.commands == [["PING"]]
    cache = (project / "app/cache.py").read_text("utf-8")
    assert f'DEFAULT_REDIS_URL = "{server.url}"' in cache
    assert "import redis" in cache and "class RedisCache" in cache
    assert "redis>=" in (project / "requirements.txt").read_text("utf-8")


def test_redis_credentials_are_sent_but_never_written(
    ctx: InvocationContext, project: Path, fake_redis: StartFakeRedis
) -> None:
    server = fake_redis()
    add_redis(ctx, project, f"redis://app:s%40cret@127.0.0.1:{server.port}/2")

    assert server.commands == [["AUTH", "app", "s@cret"], ["PING"]]
    cache = (project / "app/cache.py").read_text("utf-8")
    assert f'DEFAULT_REDIS_URL = "redis://127.0.0.1:{server.port}/2"' in cache
    assert "cret" not in cache


def test_redis_refusing_the_password_is_permanent(
    ctx: InvocationContext, project: Path, fake_redis: StartFakeRedis
) -> None:
    server = fake_redis(PING=b"-NOAUTH Authentication required.\r\n")
    with pytest.raises(PermanentError, match="refused the credentials") as caught:
        add_redis(ctx, project, server.url)
    assert caught.value.hint and "redis_url" in caught.value.hint
    assert not (project / "app/cache.py").exists()


def test_redis_still_loading_is_transient(fake_redis: StartFakeRedis) -> None:
    server = fake_redis(PING=b"-LOADING Redis is loading the dataset in memory\r\n")
    with pytest.raises(TransientError, match="not ready") as caught:
        check_redis(server.url, timeout=2)
    assert caught.value.retry_after == 1.0


def test_a_server_that_is_not_redis_is_permanent(fake_redis: StartFakeRedis) -> None:
    server = fake_redis(PING=b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(PermanentError, match="instead of \\+PONG"):
        check_redis(server.url, timeout=2)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "redis://127.0.0.1:99999/0", "unix://", "not a url"]
)
def test_a_bad_redis_url_is_permanent(url: str) -> None:
    with pytest.raises(PermanentError) as caught:
        check_redis(url, timeout=0.5)
    assert caught.value.hint and "redis://127.0.0.1:6379/0" in caught.value.hint


def test_a_missing_unix_socket_is_transient(tmp_path: Path) -> None:
    with pytest.raises(TransientError, match="no such socket") as caught:
        check_redis(f"unix://{tmp_path}/redis.sock", timeout=0.5)
    assert caught.value.hint == START_REDIS
