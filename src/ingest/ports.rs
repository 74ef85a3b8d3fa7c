//! A pool of UDP ports for RTP, one per session, reused oldest-released first.

use std::collections::VecDeque;
use std::sync::Mutex;

#[derive(Debug)]
pub struct PortPool {
    free: Mutex<VecDeque<u16>>,
}

impl PortPool {
    /// Ports `min..=max`.
    pub fn new(min: u16, max: u16) -> Self {
        Self {
            free: Mutex::new((min..=max).collect()),
        }
    }

    pub fn take(&self) -> Option<u16> {
        self.lock().pop_front()
    }

    /// A released port goes to the back, so a late packet of an old call rarely meets a new one.
    pub fn release(&self, port: u16) {
        self.lock().push_back(port);
    }

    pub fn free(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u16>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_each_port_once_and_reuses_released_last() {
        let pool = PortPool::new(5000, 5002);
        assert_eq!(pool.take(), Some(5000));
        assert_eq!(pool.take(), Some(5001));
        pool.release(5000);
        assert_eq!(pool.take(), Some(5002));
        assert_eq!(pool.take(), Some(5000));
        assert_eq!(pool.take(), None);
        assert_eq!(pool.free(), 0);
    }
}
