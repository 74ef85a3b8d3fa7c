//! Webhook sink: HTTP POST with an HMAC-SHA256 signature header, timeout, retries with backoff.
