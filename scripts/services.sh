#!/usr/bin/env bash
# Starts the brokers the test suite talks to (RabbitMQ, NATS with JetStream, Redis) when they
# are not already running, with the commands this machine's services use. Installs them
# through apt as root if missing; otherwise says exactly what to install.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ] || need+=(rabbitmq-server)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "services: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "services: missing brokers. Install them, then run this again:" >&2
    echo "  sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! listening 6379; then
  echo "services: starting redis-server on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! listening 4222; then
  echo "services: starting nats-server (JetStream) on 127.0.0.1:4222"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
fi
if ! listening 5672; then
  echo "services: starting rabbitmq-server on 127.0.0.1:5672"
  rabbitmq-server -detached
  rabbitmqctl await_startup >/dev/null
fi
for port in 6379 4222 5672; do
  for _ in $(seq 1 50); do listening "$port" && break; sleep 0.2; done
  listening "$port" || { echo "services: nothing listens on 127.0.0.1:$port" >&2; exit 1; }
done
