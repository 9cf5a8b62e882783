;; Probes KV isolation. Reads the key `shared`: if it holds anything but
;; this handler's own config text, returns `err` with what it found (a
;; leak). Then stores its config text under `shared` and returns `ok`.
;; Deployed twice with different configs (or run for two tenants), each
;; copy must only ever see its own value.
(module
  (import "hookbox:handler/kv@0.1.0" "get" (func $get (param i32 i32 i32)))
  (import "hookbox:handler/kv@0.1.0" "set" (func $set (param i32 i32 i32 i32 i32 i64)))
  (import "hookbox:handler/config@0.1.0" "get" (func $config (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x400) "shared")
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
  ;; Whether `len` bytes at `a` and `b` are equal.
  (func $same (param $a i32) (param $b i32) (param $len i32) (result i32)
    (block $differ
      (loop $next
        (if (i32.eqz (local.get $len)) (then (return (i32.const 1))))
        (br_if $differ (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (br $next)))
    (i32.const 0))
  (func (export "handle") (param $event i32) (result i32)
    (local $cfg i32)
    (local $cfg_len i32)
    (local $seen i32)
    (local $seen_len i32)
    (call $config (i32.const 0x700))
    (local.set $cfg (i32.load (i32.const 0x700)))
    (local.set $cfg_len (i32.load (i32.const 0x704)))
    ;; option<list<u8>>: tag at 0x710, pointer at 0x714, length at 0x718
    (call $get (i32.const 0x400) (i32.const 6) (i32.const 0x710))
    (if (i32.load8_u (i32.const 0x710))
      (then
        (local.set $seen (i32.load (i32.const 0x714)))
        (local.set $seen_len (i32.load (i32.const 0x718)))
        (if (i32.eqz
              (i32.and
                (i32.eq (local.get $seen_len) (local.get $cfg_len))
                (call $same (local.get $seen) (local.get $cfg) (local.get $cfg_len))))
          (then
            (i32.store8 (i32.const 0x200) (i32.const 1))
            (i32.store (i32.const 0x204) (local.get $seen))
            (i32.store (i32.const 0x208) (local.get $seen_len))
            (i32.store8 (i32.const 0x20c) (i32.const 0))
            (return (i32.const 0x200))))))
    (call $set
      (i32.const 0x400) (i32.const 6)
      (local.get $cfg) (local.get $cfg_len)
      (i32.const 0) (i64.const 0))
    (i32.const 0x100)))
