"""Bus adapters: ``memory`` (in-process, the embedded default) and ``kafka`` (Apache Kafka)."""
