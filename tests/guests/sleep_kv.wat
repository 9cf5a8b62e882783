;; world: hookbox:hostile-guests/sleeper
;; Sleeps N milliseconds inside a host call (as `sleep.wat` does), then
;; writes the KV key `late` = `after the sleep`: a delivery still writing
;; its handler's KV once it has been running for a while, as one that a
;; delete catches mid-run would. N is the config if it is a number, else
;; `attempt`.
(module
  (import "hookbox:handler/kv@0.1.0" "set" (func $set (param i32 i32 i32 i32 i32 i64)))
  (import "wasi:clocks/monotonic-clock@0.2.0" "subscribe-duration"
    (func $subscribe (param i64) (result i32)))
  (import "wasi:io/poll@0.2.0" "[method]pollable.block" (func $block (param i32)))
  (import "hookbox:handler/config@0.1.0" "get" (func $config (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x400) "late")
  (data (i32.const 0x410) "after the sleep")
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
  ;; The guest's parameter: the handler config when it is a decimal number
  ;; (`10000`: how a daemon test sets it), else the event's `attempt`.
  (func $param (param $event i32) (result i32)
    (local $p i32)
    (local $end i32)
    (local $n i32)
    (local $c i32)
    (call $config (i32.const 0x700))
    (local.set $p (i32.load (i32.const 0x700)))
    (local.set $end (i32.add (local.get $p) (i32.load (i32.const 0x704))))
    (block $not_number
      (br_if $not_number (i32.eq (local.get $p) (local.get $end)))
      (loop $digit
        (local.set $c (i32.sub (i32.load8_u (local.get $p)) (i32.const 0x30)))
        (br_if $not_number (i32.gt_u (local.get $c) (i32.const 9)))
        (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (local.get $c)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br_if $digit (i32.lt_u (local.get $p) (local.get $end))))
      (return (local.get $n)))
    (i32.load offset=72 (local.get $event)))
  (func (export "handle") (param $event i32) (result i32)
    (call $block
      (call $subscribe
        (i64.mul
          (i64.extend_i32_u (call $param (local.get $event)))
          (i64.const 1000000))))
    (call $set
      (i32.const 0x400) (i32.const 4)
      (i32.const 0x410) (i32.const 15)
      (i32.const 0) (i64.const 0))
    (i32.const 0x100)))
