"""Where Redis is: plain URLs and Sentinel, for our clients, Celery's broker, redbeat and Flower.

The failover itself is drilled with real processes in ``tests/faults/test_sentinel_failover.py``;
these tests pin what each library is handed, since a wrong option name there is silently
ignored (kombu, redbeat and Flower each read their own keys).
"""

from __future__ import annotations

import pytest
from celery import Celery
from kombu import Connection
from redis.sentinel import SentinelConnectionPool

from tests.conftest import make_settings
from workers.jobs.celery_app import celery_config
from workers.jobs.connection import celery_redis_options, redis_client, sentinel_of
from workers.settings import SettingsError

SENTINELS = "sentinel://:s3cret@10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://10.0.0.3/2"


def sentinel_settings(**extra: str):
    return make_settings(REDIS_URL=SENTINELS, REDIS_SENTINEL_MASTER="mymaster", **extra)


@pytest.mark.parametrize(
    ("env", "name", "fragment"),
    [
        ({"REDIS_URL": "sentinel://h1:26379"}, "REDIS_SENTINEL_MASTER", "required"),
        ({"REDIS_URL": "sentinel://h1:port", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_URL", "port"),
        ({"REDIS_URL": "sentinel://h1:1;redis://h2:2", "REDIS_SENTINEL_MASTER": "m"},
         "REDIS_URL", "sentinel://host:port"),
        ({"REDIS_URL": "sentinel://h1:1;", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_URL", "each"),
        ({"REDIS_URL": "sentinel://h1:1/0;sentinel://h2:2/1", "REDIS_SENTINEL_MASTER": "m"},
         "REDIS_URL", "different databases"),
        ({"REDIS_URL": "sentinel://:a@h1:1;sentinel://:b@h2:2", "REDIS_SENTINEL_MASTER": "m"},
         "REDIS_URL", "different passwords"),
        ({"REDIS_URL": "sentinel://h1:1/x", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_URL", "0-15"),
        ({"REDIS_URL": "sentinel://h1:1;sentinel://h1:1", "REDIS_SENTINEL_MASTER": "m"},
         "REDIS_URL", "twice"),
        ({"REDIS_URL": "sentinel://h1:1", "REDIS_SENTINEL_MASTER": "my master"},
         "REDIS_SENTINEL_MASTER", "pattern"),
        ({"REDIS_URL": "redis://h1:6379/0", "REDIS_SENTINEL_MASTER": "m"},
         "REDIS_SENTINEL_MASTER", "only used with"),
        ({"REDIS_URL": "redis://h1:6379/0", "REDIS_SENTINEL_PASSWORD": "pw"},
         "REDIS_SENTINEL_PASSWORD", "only used with"),
        ({"REDIS_URL": "sentinels://h1:1", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_URL", "sentinel"),
    ],
)
def test_a_malformed_sentinel_setting_is_one_line_naming_the_variable(
    env: dict[str, str], name: str, fragment: str
) -> None:
    with pytest.raises(SettingsError) as info:
        make_settings(**env)
    message = str(info.value)
    assert message.startswith(f"{name}: "), message
    assert fragment.lower() in message.lower(), message
    assert "\n" not in message
    assert "s3cret" not in message and ":a@" not in message


def test_the_sentinel_url_is_read_whole_and_its_password_never_shown() -> None:
    settings = sentinel_settings(REDIS_SENTINEL_PASSWORD="sentinel-pw")
    address = sentinel_of(settings)
    assert address is not None
    assert address.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379))
    assert (address.db, address.password) == (2, "s3cret")
    shown = repr(settings) + repr(address)
    assert "s3cret" not in shown and "sentinel-pw" not in shown
    assert "10.0.0.2:26380" in shown


def test_plain_urls_are_not_sentinel() -> None:
    settings = make_settings(REDIS_URL="rediss://:pw@redis.example:6380/1")
    assert sentinel_of(settings) is None
    client = redis_client(settings, socket_timeout=3)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["socket_timeout"]) == \
        ("redis.example", 6380, 1, 3)  # fmt: skip


def test_our_client_follows_the_master_the_sentinels_name() -> None:
    client = redis_client(sentinel_settings(REDIS_SENTINEL_PASSWORD="sentinel-pw"),
                          socket_timeout=2, socket_connect_timeout=1)  # fmt: skip
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    # The data connections: database and password from the URL, our timeouts.
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (2, "s3cret", 2)
    sentinels = pool.sentinel_manager.sentinels
    addresses = [(s.connection_pool.connection_kwargs["host"],
                  s.connection_pool.connection_kwargs["port"]) for s in sentinels]
    assert addresses == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)]
    # The Sentinels: their own password, and the same short timeouts.
    first = sentinels[0].connection_pool.connection_kwargs
    assert (first["password"], first["socket_timeout"], first["socket_connect_timeout"]) == \
        ("sentinel-pw", 2, 1)  # fmt: skip


def test_celery_broker_gets_every_sentinel_with_the_database_and_the_master_name() -> None:
    config = celery_config(sentinel_settings())
    url = config["broker_url"]
    assert url == ("sentinel://:s3cret@10.0.0.1:26379/2;sentinel://:s3cret@10.0.0.2:26380/2;"
                   "sentinel://:s3cret@10.0.0.3:26379/2")  # fmt: skip
    options = config["broker_transport_options"]
    assert options["master_name"] == "mymaster"
    assert options["visibility_timeout"] == 3600  # the usual options are kept
    # No Sentinel password set: the Sentinels get only the timeouts.
    sentinel_kwargs = dict(options["sentinel_kwargs"])
    assert sentinel_kwargs.pop("retry").get_retries() == 0  # the next Sentinel instead
    assert sentinel_kwargs == {"socket_timeout": 10, "socket_connect_timeout": 5}
    # kombu itself: the Sentinel transport, every Sentinel as a failover address, database 2.
    connection = Connection(url, transport_options=options)
    assert connection.transport_cls == "sentinel"
    assert len(connection.alt) == 3
    assert connection.virtual_host == "2"
    channel_options = connection.transport.Channel.from_transport_options
    assert {"master_name", "sentinel_kwargs"} <= set(channel_options)


def test_redbeat_builds_a_sentinel_client_for_the_master() -> None:
    from redbeat.schedulers import RetryingConnection, get_redis

    app = Celery("redbeat-sentinel-test")
    app.conf.update(celery_config(sentinel_settings(REDIS_SENTINEL_PASSWORD="sentinel-pw")))
    client = get_redis(app)
    assert isinstance(client, RetryingConnection)  # rides out a failover (retry_period)
    pool = client.wrapped_connection.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (2, "s3cret")
    sentinel = pool.sentinel_manager.sentinels[1].connection_pool.connection_kwargs
    assert (sentinel["host"], sentinel["port"], sentinel["password"]) == \
        ("10.0.0.2", 26380, "sentinel-pw")  # fmt: skip


def test_flower_finds_the_master_name_in_the_broker_options() -> None:
    from flower.utils.broker import Broker, RedisSentinel

    app = Celery("flower-sentinel-test")
    app.conf.update(celery_config(sentinel_settings()))
    broker = Broker(app.connection().as_uri(include_password=True),
                    broker_options=app.conf.broker_transport_options)  # fmt: skip
    assert isinstance(broker, RedisSentinel)
    assert broker.master_name == "mymaster"
    assert broker.redis.connection_pool.service_name == "mymaster"


def test_plain_url_config_is_unchanged() -> None:
    options = celery_redis_options(make_settings(REDIS_URL="redis://127.0.0.1:6379/3"),
                                   {"visibility_timeout": 60})  # fmt: skip
    assert options == {"broker_url": "redis://127.0.0.1:6379/3",
                       "broker_transport_options": {"visibility_timeout": 60},
                       "redbeat_redis_url": "redis://127.0.0.1:6379/3"}  # fmt: skip
