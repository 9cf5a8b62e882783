;; Emits one `pong` event (payload `{}`) into the tenant named by its config,
;; a JSON string (`"zeta"` emits into tenant `zeta`), and traps when the host
;; refuses the emit. A handler serving tenant `acme` asking to emit into
;; another tenant is refused: tenant isolation holds against handler code.
(module
  (import "hookbox:handler/emit@0.1.0" "emit"
    (func $emit (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (import "hookbox:handler/config@0.1.0" "get" (func $config (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x400) "pong")
  (data (i32.const 0x410) "{}")
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
    (call $config (i32.const 0x700))
    (call $emit
      (i32.const 0x400) (i32.const 4)                 ;; type: pong
      ;; tenant: some(the config text without its quotes)
      (i32.const 1)
      (i32.add (i32.load (i32.const 0x700)) (i32.const 1))
      (i32.sub (i32.load (i32.const 0x704)) (i32.const 2))
      (i32.const 0x410) (i32.const 2)                 ;; payload
      (i32.const 0) (i32.const 0)                     ;; metadata: []
      (i32.const 0) (i32.const 0) (i32.const 0)       ;; key: none
      (i32.const 0) (i32.const 0)                     ;; priority: none
      (i32.const 0x500))                              ;; result area
    (if (i32.load8_u (i32.const 0x500))
      (then unreachable))
    (i32.const 0x100)))
