//! RabbitMQ sink (AMQP 0-9-1, lapin): durable topic exchange, persistent messages, publisher confirms.
