//! Per-client cap on sessions reserved over the HTTP API, so that no one client can hold
//! every RTP port. A client is its bearer token when tokens are set, else its IP address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Who a request comes from, for the quota: set by `auth` (token) or the listener (address).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey(pub String);

/// Sessions held per client, against one cap.
#[derive(Debug)]
pub struct ReservationQuota {
    per_client: usize,
    held: Mutex<HashMap<ClientKey, usize>>,
}

/// One session's share of its client's quota; given back on drop.
#[derive(Debug)]
pub struct QuotaGuard {
    quota: Arc<ReservationQuota>,
    key: ClientKey,
}

impl ReservationQuota {
    /// `per_client` = 0: no cap.
    pub fn new(per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            per_client,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A share for `key`, or None when it already holds `per_client` sessions.
    pub fn try_take(self: &Arc<Self>, key: ClientKey) -> Option<QuotaGuard> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(key.clone()).or_default();
        if self.per_client > 0 && *count >= self.per_client {
            return None;
        }
        *count += 1;
        Some(QuotaGuard {
            quota: self.clone(),
            key,
        })
    }

    pub fn per_client(&self) -> usize {
        self.per_client
    }

    pub fn held_by(&self, key: &ClientKey) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(key).copied().unwrap_or(0)
    }
}

impl Drop for QuotaGuard {
    fn drop(&mut self) {
        let mut held = self.quota.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_is_capped_alone_and_shares_come_back() {
        let q = ReservationQuota::new(2);
        let a = ClientKey("ip:10.0.0.1".into());
        let b = ClientKey("ip:10.0.0.2".into());
        let a1 = q.try_take(a.clone()).unwrap();
        let _a2 = q.try_take(a.clone()).unwrap();
        assert!(q.try_take(a.clone()).is_none());
        let _b1 = q.try_take(b.clone()).unwrap();
        drop(a1);
        assert_eq!(q.held_by(&a), 1);
        assert!(q.try_take(a.clone()).is_some());
        let unlimited = ReservationQuota::new(0);
        let all: Vec<_> = (0..100)
            .map(|_| unlimited.try_take(a.clone()).unwrap())
            .collect();
        assert_eq!(unlimited.held_by(&a), all.len());
    }
}
