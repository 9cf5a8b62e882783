//! The wasmtime `Engine` Hookbox runs every handler in: fuel and epoch
//! interruption on, the pooling allocator sized from [`RuntimeConfig`]
//! (falling back to on-demand allocation when the pool's address space
//! cannot be reserved), the epoch ticker thread, and the engine fingerprint
//! that keys the compiled-code cache.

use std::hash::Hasher;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::{RuntimeConfig, RuntimeError};

/// wasmtime's default async stack; `max_wasm_stack` must stay below it.
const ASYNC_STACK_BYTES: usize = 2 << 20;
/// A Rust `wasm32-wasip2` component instantiates several core instances
/// (main module, shims, fixups): WASMTIME-NOTES measured ≈ 8 per component.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
/// Each core instance has at most one table; most have none.
const TABLES_PER_COMPONENT: u32 = 4;
/// Memories per component instance: one for Rust guests, a few for
/// interpreters bundling several modules.
const MEMORIES_PER_COMPONENT: u32 = 2;
/// Table slot size in the pool; `Limits::table_elements` above this is
/// refused by the pool and reported as `table_limit`. Interpreter guests
/// (componentize-py) have tables of tens of thousands of functions.
const POOL_TABLE_ELEMENTS: usize = 100_000;
/// Linear memory reset with `memset` instead of `madvise` when a slot is
/// reused: cheaper for the small memories of typical handlers
/// (WASMTIME-NOTES: ≈ 34 µs → 25 µs per fresh delivery).
const KEEP_RESIDENT_BYTES: usize = 1 << 20;
/// Frames kept in a trap's backtrace (the error text shows them).
const BACKTRACE_FRAMES: usize = 16;

/// Checks the knobs that would make `Engine::new` fail obscurely.
pub(super) fn check_config(cfg: &RuntimeConfig) -> Result<(), RuntimeError> {
    let bad = |msg: String| Err(RuntimeError::Config(msg));
    if cfg.max_wasm_stack == 0 || cfg.max_wasm_stack >= ASYNC_STACK_BYTES {
        return bad(format!(
            "max_wasm_stack must be between 1 and {} bytes (below wasmtime's async stack), got {}",
            ASYNC_STACK_BYTES - 1,
            cfg.max_wasm_stack
        ));
    }
    if cfg.epoch_tick.is_zero() {
        return bad("epoch_tick must be greater than 0".into());
    }
    if cfg.pooling && cfg.pool_instances == 0 {
        return bad("pool_instances must be greater than 0".into());
    }
    if cfg.pool_memory_bytes == 0 || cfg.pool_memory_bytes > 4 << 30 {
        return bad(format!(
            "pool_memory_bytes must be between 1 and 4 GiB (32-bit memories), got {}",
            cfg.pool_memory_bytes
        ));
    }
    if cfg.max_component_bytes == 0 {
        return bad("max_component_bytes must be greater than 0".into());
    }
    Ok(())
}

fn base_config(cfg: &RuntimeConfig) -> Config {
    let mut c = Config::new();
    c.consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(cfg.max_wasm_stack)
        .wasm_component_model(true)
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(BACKTRACE_FRAMES));
    c
}

fn pool_config(cfg: &RuntimeConfig) -> PoolingAllocationConfig {
    let n = cfg.pool_instances;
    let mut p = PoolingAllocationConfig::new();
    p.total_component_instances(n)
        .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(n.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(n.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(n)
        .max_memory_size(cfg.pool_memory_bytes as usize)
        .table_elements(POOL_TABLE_ELEMENTS)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        // Linux ≥ 6.7: reset only the pages the guest wrote (BENCHMARKS.md).
        .pagemap_scan(Enabled::Auto)
        .max_unused_warm_slots(n.saturating_mul(MEMORIES_PER_COMPONENT));
    p
}

/// Creates the engine; the flag says whether the pooling allocator is in use.
/// An engine with the code settings of [`build`]'s, without an instance
/// pool: what a compile child needs (its code loads in either).
pub(super) fn compile_engine(cfg: &RuntimeConfig) -> Result<Engine, RuntimeError> {
    Engine::new(&base_config(cfg)).map_err(|e| RuntimeError::Engine(format!("{e:#}")))
}

pub(super) fn build(cfg: &RuntimeConfig) -> Result<(Engine, bool), RuntimeError> {
    check_config(cfg)?;
    if cfg.pooling {
        let mut pooled = base_config(cfg);
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool_config(cfg)));
        match Engine::new(&pooled) {
            Ok(engine) => return Ok((engine, true)),
            Err(err) => tracing::warn!(
                error = %format!("{err:#}"),
                pool_instances = cfg.pool_instances,
                pool_memory_bytes = cfg.pool_memory_bytes,
                "Pooling allocator unavailable, falling back to on-demand allocation"
            ),
        }
    }
    let engine =
        Engine::new(&base_config(cfg)).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
    Ok((engine, false))
}

/// Feeds `Hash` output into SHA-256, so the fingerprint is stable across
/// processes (unlike `DefaultHasher`, whose algorithm may change).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("32-byte digest"))
    }
}

/// Hex key for compiled code: code serialized by an engine loads only into
/// an engine with the same compatibility hash, and our own version is mixed
/// in because the host bindings are part of what the code was checked for.
pub(super) fn fingerprint(engine: &Engine) -> String {
    let mut h = Sha256Hasher(Sha256::new());
    h.write(b"hookbox ");
    h.write(env!("CARGO_PKG_VERSION").as_bytes());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
    hex::encode(h.0.finalize())
}

/// Increments the engine's epoch every tick until dropped.
#[derive(Debug)]
pub(super) struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Ticker {
    pub(super) fn start(engine: Engine, tick: Duration) -> Result<Ticker, RuntimeError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("hookbox-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })
            .map_err(|e| RuntimeError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            // The thread exits within one tick; a panic in it is not ours to rethrow.
            let _ = t.join();
        }
    }
}

/// Epoch ticks for a timeout: rounded up, at least one.
pub(super) fn deadline_ticks(timeout: Duration, tick: Duration) -> u64 {
    let t = timeout.as_nanos();
    let k = tick.as_nanos().max(1);
    t.div_ceil(k).clamp(1, u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up() {
        let ms = Duration::from_millis;
        assert_eq!(deadline_ticks(ms(100), ms(10)), 10);
        assert_eq!(deadline_ticks(ms(101), ms(10)), 11);
        assert_eq!(deadline_ticks(ms(1), ms(10)), 1);
        assert_eq!(deadline_ticks(ms(0), ms(10)), 1);
        assert_eq!(
            deadline_ticks(Duration::MAX, Duration::from_nanos(1)),
            u64::MAX
        );
    }

    #[test]
    fn bad_configs_are_refused_with_the_knob_named() {
        let stack = RuntimeConfig {
            max_wasm_stack: ASYNC_STACK_BYTES,
            ..RuntimeConfig::default()
        };
        let err = check_config(&stack).unwrap_err().to_string();
        assert!(err.contains("max_wasm_stack"), "{err}");
        let tick = RuntimeConfig {
            epoch_tick: Duration::ZERO,
            ..RuntimeConfig::default()
        };
        assert!(
            check_config(&tick)
                .unwrap_err()
                .to_string()
                .contains("epoch_tick")
        );
        assert!(check_config(&RuntimeConfig::default()).is_ok());
    }
}
