;; For the dashboard's browser test (tests/browser): markup where a
;; handler controls text. Logs `<img src=x onerror=alert(1)>` (with a field whose value is markup)
;; and `<script>alert(2)</script>`, then returns a handler error that is markup too, not
;; retryable, so the delivery goes straight to the dead letters. A page
;; that showed any of it as HTML would run the `alert`s.
(module
  (import "hookbox:handler/log@0.1.0" "log" (func $log (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x400) "<img src=x onerror=alert(1)>")
  (data (i32.const 0x440) "<script>alert(2)</script>")
  (data (i32.const 0x480) "<img src=x onerror=alert(3)><script>alert(4)</script> not retryable")
  (data (i32.const 0x500) "html")
  (data (i32.const 0x540) "<b onmouseover=alert(5)>bold</b>")
  ;; One field (key, value): list<tuple<string, string>> of one element.
  (data (i32.const 0x600) "\00\05\00\00\04\00\00\00\40\05\00\00\20\00\00\00")
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
    ;; level 3 = warn, 2 = info
    (call $log (i32.const 3) (i32.const 0x400) (i32.const 28) (i32.const 0x600) (i32.const 1))
    (call $log (i32.const 2) (i32.const 0x440) (i32.const 25) (i32.const 0) (i32.const 0))
    ;; err(handler-error { message, retryable: false })
    (i32.store8 (i32.const 0x200) (i32.const 1))
    (i32.store (i32.const 0x204) (i32.const 0x480))
    (i32.store (i32.const 0x208) (i32.const 67))
    (i32.store8 (i32.const 0x20c) (i32.const 0))
    (i32.const 0x200)))
