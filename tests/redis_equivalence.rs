//! The embedded Redis answers like a real `redis-server`.
