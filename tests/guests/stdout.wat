;; world: hookbox:test-guests/wasi-handler
;; Writes `hello\n` to WASI stdout `attempt` times (6 bytes each), then
;; `done\n` to stderr.
(module
  (import "wasi:cli/stdout@0.2.0" "get-stdout" (func $stdout (result i32)))
  (import "wasi:cli/stderr@0.2.0" "get-stderr" (func $stderr (result i32)))
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush"
    (func $write (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x400) "hello\n")
  (data (i32.const 0x410) "done\n")
  ;; Bump allocator for the host's canonical-ABI allocations (the event's
  ;; strings, results of imports); never frees, grows memory when needed.
  (global $heap (mut i32) (i32.const 0x8000))
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
    (block $fits
      (br_if $fits (i32.le_u (global.get $heap) (i32.shl (memory.size) (i32.const 16))))
      (br_if $fits
        (i32.ne
          (memory.grow
            (i32.sub (i32.add (i32.shr_u (global.get $heap) (i32.const 16)) (i32.const 1))
                     (memory.size)))
          (i32.const -1)))
      unreachable)
    (local.get $ptr))
  (func (export "handle") (param $event i32) (result i32)
    (local $n i32)
    (local $out i32)
    (local.set $n (i32.load offset=72 (local.get $event)))
    (local.set $out (call $stdout))
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $n)))
        (call $write (local.get $out) (i32.const 0x400) (i32.const 6) (i32.const 0x500))
        ;; result<_, stream-error>: a failed write is a bug here
        (if (i32.load8_u (i32.const 0x500)) (then unreachable))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $more)))
    (call $write (call $stderr) (i32.const 0x410) (i32.const 5) (i32.const 0x500))
    (i32.const 0x100)))
