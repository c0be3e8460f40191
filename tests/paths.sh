# tests/paths.sh -- where the test tooling lives; sourced by tests/deps,
# tests/services and tests/run-system so that they agree.
#
# SLUICE_CACHE (default ~/.cache/sluice) holds the Kafka broker's jars and the
# test virtualenv, outside the repository, so a fresh clone reuses them.
sluice_tests=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sluice_cache=${SLUICE_CACHE:-$HOME/.cache/sluice}
sluice_kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$sluice_tests/kafka/pom.xml")
sluice_kafka_dir="$sluice_cache/kafka-$sluice_kafka_version"
sluice_venv="$sluice_cache/venv-$(sha1sum "$sluice_tests/requirements.txt" | cut -c1-12)"
