;; Emits one event of type `meta` with N empty metadata entries (N
;; zeroed (ptr, len) pairs of 16 bytes at 0x100000). N is the config if it
;; is a number, else `attempt`.
(module
  (import "hookbox:handler/emit@0.1.0" "emit"
    (func $emit (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (import "hookbox:handler/config@0.1.0" "get" (func $config (param i32)))
  (memory (export "memory") 1)
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
  ;; Grows memory so that it holds `end` bytes.
  (func $reserve (param $end i32)
    (local $want i32)
    (local.set $want (i32.shr_u (i32.add (local.get $end) (i32.const 0xffff)) (i32.const 16)))
    (if (i32.gt_u (local.get $want) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $want) (memory.size))) (i32.const -1))
          (then unreachable)))))
  (data (i32.const 0x400) "meta")
  (data (i32.const 0x410) "{}")
  (func (export "handle") (param $event i32) (result i32)
    (local $n i32)
    (local.set $n (call $param (local.get $event)))
    (call $reserve (i32.add (i32.const 0x100000) (i32.shl (local.get $n) (i32.const 4))))
    (call $emit
      (i32.const 0x400) (i32.const 4)                 ;; type
      (i32.const 0) (i32.const 0) (i32.const 0)       ;; tenant: none
      (i32.const 0x410) (i32.const 2)                 ;; payload
      (i32.const 0x100000) (local.get $n)             ;; metadata
      (i32.const 0) (i32.const 0) (i32.const 0)       ;; key: none
      (i32.const 0) (i32.const 0)                     ;; priority: none
      (i32.const 0x500))                              ;; result area
    (i32.const 0x100)))
