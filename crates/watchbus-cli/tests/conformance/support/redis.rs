//! The private `redis-server` of each Redis test: `watchbus-testkit`'s.
//!
//! Without `redis-server` on PATH the redis target says `SKIPPED` on the
//! real stderr and exits with success before running anything against
//! Redis, unless `WATCHBUS_REQUIRE_REDIS=1`, which makes every test that
//! needs Redis fail.

pub(crate) use watchbus_testkit::{Persistence, TestRedis};
