;; A well-behaved handler using every Hookbox interface:
;; - logs `handled` (info) with the field `type` = the event's type,
;; - increments the KV counter `count`,
;; - logs the config text (debug),
;; - emits `seen` with payload `{}` (tenant: the event's),
;; - reads the clock, and returns `ok`.
(module
  (import "hookbox:handler/log@0.1.0" "log" (func $log (param i32 i32 i32 i32 i32)))
  (import "hookbox:handler/kv@0.1.0" "increment" (func $increment (param i32 i32 i64) (result i64)))
  (import "hookbox:handler/config@0.1.0" "get" (func $config (param i32)))
  (import "hookbox:handler/emit@0.1.0" "emit"
    (func $emit (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (import "hookbox:handler/clock@0.1.0" "now-ms" (func $now (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 0x400) "handled")
  (data (i32.const 0x410) "type")
  (data (i32.const 0x420) "count")
  (data (i32.const 0x430) "seen")
  (data (i32.const 0x440) "{}")
  (data (i32.const 0x450) "clock")
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
    ;; fields: [("type", event.type)] as one tuple<string, string> at 0x600
    (i32.store (i32.const 0x600) (i32.const 0x410))
    (i32.store (i32.const 0x604) (i32.const 4))
    (i32.store (i32.const 0x608) (i32.load offset=8 (local.get $event)))
    (i32.store (i32.const 0x60c) (i32.load offset=12 (local.get $event)))
    (call $log (i32.const 2) (i32.const 0x400) (i32.const 7) (i32.const 0x600) (i32.const 1))
    (drop (call $increment (i32.const 0x420) (i32.const 5) (i64.const 1)))
    ;; config text: string at 0x700 (ptr) / 0x704 (len)
    (call $config (i32.const 0x700))
    (call $log (i32.const 1)
      (i32.load (i32.const 0x700)) (i32.load (i32.const 0x704))
      (i32.const 0) (i32.const 0))
    (call $emit
      (i32.const 0x430) (i32.const 4)
      (i32.const 0) (i32.const 0) (i32.const 0)
      (i32.const 0x440) (i32.const 2)
      (i32.const 0) (i32.const 0)
      (i32.const 0) (i32.const 0) (i32.const 0)
      (i32.const 0) (i32.const 0)
      (i32.const 0x500))
    ;; a clock before 2020 means the host clock is broken: fail loudly
    (if (i64.lt_u (call $now) (i64.const 1577836800000))
      (then unreachable))
    (if (i32.load8_u (i32.const 0x500))
      (then unreachable))
    (i32.const 0x100)))
