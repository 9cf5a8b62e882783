;; An interpreter's start-up in miniature: a start function burns fuel
;; (≈ 40 k operators, past the runtime's threshold for preparing instances
;; ahead of the event) and sets instance state; `handle` bumps a global
;; and a byte of memory and logs "<global><byte>", each as one digit. A
;; fresh instance logs "21" (start-up ran once, one call); any state
;; carried over from another delivery shows as a larger digit. (A core
;; start function cannot call imports: wit-component fills the import
;; table only after it.) `attempt` 99 traps after logging.
(module
  (import "hookbox:handler/log@0.1.0" "log" (func $log (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (global $heap (mut i32) (i32.const 0x8000))
  (func $init
    (local $i i32)
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const 10000))))
    (global.set $calls (i32.const 1)))
  (start $init)
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
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store8 (i32.const 0x500) (i32.add (i32.load8_u (i32.const 0x500)) (i32.const 1)))
    (i32.store8 (i32.const 0x400) (i32.add (i32.const 0x30) (global.get $calls)))
    (i32.store8 (i32.const 0x401) (i32.add (i32.const 0x30) (i32.load8_u (i32.const 0x500))))
    (call $log (i32.const 2) (i32.const 0x400) (i32.const 2) (i32.const 0) (i32.const 0))
    (if (i32.eq (i32.load offset=72 (local.get $event)) (i32.const 99))
      (then unreachable))
    (i32.const 0x100)))
