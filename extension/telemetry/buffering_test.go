package telemetry

import "testing"

func TestInvokeBuffering(t *testing.T) {
	d, b := DefaultBuffering(), InvokeBuffering()
	// SLUICE_FLUSH=invoke waits for runtimeDone before /event/next: every
	// millisecond of the wait is billed, so it takes Lambda's minimum.
	if b.TimeoutMs != 25 {
		t.Errorf("InvokeBuffering().TimeoutMs = %d, want 25 (Lambda's minimum)", b.TimeoutMs)
	}
	if d.TimeoutMs <= b.TimeoutMs {
		t.Errorf("DefaultBuffering().TimeoutMs = %d, want more than InvokeBuffering's %d (fewer POSTs when nothing waits)", d.TimeoutMs, b.TimeoutMs)
	}
	// The listener's body limit is derived from MaxBytes: both must agree.
	if b.MaxItems != d.MaxItems || b.MaxBytes != d.MaxBytes {
		t.Errorf("InvokeBuffering() = %+v, want DefaultBuffering's %+v but for TimeoutMs", b, d)
	}
}
