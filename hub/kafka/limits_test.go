package kafka

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	b := newBudget(100)
	far := time.Now().Add(time.Minute)
	ctx := context.Background()
	if err := b.acquire(ctx, far, 80); err != nil {
		t.Fatal(err)
	}
	// A waiter that does not fit waits; one behind it waits its turn even
	// though it would fit (first come, first served).
	got := make(chan int, 2)
	waiting := func(n int) {
		for {
			b.mu.Lock()
			w := len(b.waiters)
			b.mu.Unlock()
			if w == n {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	go func() { b.acquire(ctx, far, 50); got <- 50 }()
	waiting(1)
	go func() { b.acquire(ctx, far, 10); got <- 10 }()
	waiting(2)
	select {
	case n := <-got:
		t.Fatalf("acquire(%d) returned while 80 of 100 were taken and 50 waited first", n)
	default:
	}
	b.release(80)
	if a, c := <-got, <-got; a+c != 60 {
		t.Fatalf("granted %d and %d", a, c)
	}
	if u := b.inUse(); u != 60 {
		t.Fatalf("in use %d, want 60", u)
	}
	// A deadline ends a wait, and leaves nothing taken.
	if err := b.acquire(ctx, time.Now().Add(20*time.Millisecond), 50); !errors.Is(err, errNoRoom) {
		t.Fatalf("acquire past its deadline = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.acquire(cctx, far, 50); !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire with a cancelled context = %v", err)
	}
	if u := b.inUse(); u != 60 {
		t.Fatalf("in use %d after failed waits, want 60", u)
	}
	// More than the whole budget takes the whole budget.
	b.release(60)
	if err := b.acquire(ctx, far, 1000); err != nil || b.inUse() != 100 {
		t.Fatalf("acquire(1000) of 100 = %v, in use %d", err, b.inUse())
	}
}
