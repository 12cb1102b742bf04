package client

import (
	"context"
	"errors"
	"slices"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
)

// What a Client tracks to resync after a reconnect (docs/PROTOCOL.md,
// "Resync after a reconnect") and to deliver pushes without duplicates:
//
//   - versions: per coupon, the newest version delivered to OnCoupon or
//     returned by Subscribe, Get or Follow. A coupon push or resync snapshot
//     reaches OnCoupon only if it is newer.
//   - subs: the coupons subscribed to (Subscribe, Follow) and not
//     unsubscribed (Unsubscribe, Unfollow); resubscribed with their versions.
//   - the feed position: once Feed has succeeded, lastSeq is the newest seq
//     returned by Feed or delivered to OnFeed. OnFeed gets every later seq
//     once, in order: pushes that arrive while a page is being read, or
//     after a gap, wait in feedBuf until the entries before them are in; a
//     gap is filled by reading the feed after lastSeq.
//
// Locks: deliverMu (held while calling OnCoupon and OnFeed, so they are
// never called concurrently or out of order) before smu (the fields).

// feedPage is the page size of the feed reads the client makes itself.
const feedPage = 500

// subscribeChunk keeps each resync subscribe frame well under the server's
// frame limit (protocol.MaxRequestBytes; ids are up to protocol.MaxIDLen
// characters).
const subscribeChunk = 100

// retryable lists the error codes of a resync request after which the
// client drops the connection and tries again; other error replies are
// reported to OnError and the resync goes on.
var retryable = map[couponmesh.Code]bool{
	couponmesh.CodeUnavailable: true, couponmesh.CodeRateLimited: true, couponmesh.CodeInternal: true,
	couponmesh.CodeUnauthorized: true, // the session lost its auth: start over
}

// noteCoupon records cp's version and reports whether it is newer than any
// the client has seen.
func (c *Client) noteCoupon(cp couponmesh.Coupon) bool {
	c.smu.Lock()
	defer c.smu.Unlock()
	if v, ok := c.versions[cp.ID]; ok && v >= cp.Version {
		return false
	}
	c.versions[cp.ID] = cp.Version
	return true
}

// deliverCoupon hands cp to OnCoupon if it is newer than what the client
// has seen.
func (c *Client) deliverCoupon(cp couponmesh.Coupon) {
	c.deliverMu.Lock()
	defer c.deliverMu.Unlock()
	if c.noteCoupon(cp) && c.opts.OnCoupon != nil {
		c.opts.OnCoupon(cp)
	}
}

func (c *Client) pushCoupon(cp couponmesh.Coupon) { c.deliverCoupon(cp) }

// pushPresence hands a presence push to OnPresence.
func (c *Client) pushPresence(coupon string, watching int) {
	if c.opts.OnPresence == nil {
		return
	}
	c.deliverMu.Lock()
	defer c.deliverMu.Unlock()
	c.opts.OnPresence(coupon, watching)
}

// subscribed records subscriptions that succeeded.
func (c *Client) subscribed(subs []Sub, r SubscribeResult) {
	c.smu.Lock()
	for _, s := range subs {
		if slices.Contains(r.Missing, s.ID) {
			continue
		}
		c.subs[s.ID] = struct{}{}
		if v, ok := c.versions[s.ID]; s.Version > 0 && (!ok || v < s.Version) {
			c.versions[s.ID] = s.Version
		}
	}
	c.smu.Unlock()
	for _, cp := range r.Coupons {
		c.noteCoupon(cp)
	}
}

func (c *Client) forget(ids ...string) {
	c.smu.Lock()
	defer c.smu.Unlock()
	for _, id := range ids {
		delete(c.subs, id)
		delete(c.versions, id)
	}
}

// pushFeed handles a feed push that came on l.
func (c *Client) pushFeed(l *link, e couponmesh.FeedEntry) {
	c.deliverMu.Lock()
	defer c.deliverMu.Unlock()
	c.smu.Lock()
	if e.Seq <= c.lastSeq {
		c.smu.Unlock()
		return // seen already
	}
	if c.fetching == 0 && (!c.feedOn || e.Seq == c.lastSeq+1) {
		// In order (or no position yet: a server that pushes the feed
		// without op feed).
		c.lastSeq = e.Seq
		c.smu.Unlock()
		if c.opts.OnFeed != nil {
			c.opts.OnFeed(e)
		}
		c.drainFeedLocked()
		return
	}
	c.feedBuf[e.Seq] = e
	gap := c.fetching == 0
	if gap {
		c.fetching++
	}
	c.smu.Unlock()
	if gap {
		c.fillGap(l)
	}
}

// drainFeedLocked delivers the buffered entries that follow lastSeq and
// drops those seen already. deliverMu must be held.
func (c *Client) drainFeedLocked() {
	for {
		c.smu.Lock()
		e, ok := c.feedBuf[c.lastSeq+1]
		if ok {
			delete(c.feedBuf, e.Seq)
			c.lastSeq = e.Seq
		} else {
			for seq := range c.feedBuf {
				if seq <= c.lastSeq {
					delete(c.feedBuf, seq)
				}
			}
		}
		c.smu.Unlock()
		if !ok {
			return
		}
		if c.opts.OnFeed != nil {
			c.opts.OnFeed(e)
		}
	}
}

// deliverFeedLocked delivers entries (in seq order) newer than lastSeq,
// then what the buffer holds next. deliverMu must be held.
func (c *Client) deliverFeedLocked(entries []couponmesh.FeedEntry) {
	for _, e := range entries {
		c.smu.Lock()
		ok := e.Seq > c.lastSeq
		if ok {
			c.lastSeq = e.Seq
		}
		c.smu.Unlock()
		if ok && c.opts.OnFeed != nil {
			c.opts.OnFeed(e)
		}
	}
	c.drainFeedLocked()
}

// fillGap reads the feed after lastSeq on l in the background (fetching has
// been counted for it). If l ends first, the resync of the next connection
// reads it.
func (c *Client) fillGap(l *link) {
	c.mu.Lock()
	if c.closing || c.ended {
		c.mu.Unlock()
		c.smu.Lock()
		c.fetching--
		c.smu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, c.dialTimeout)
		defer cancel()
		c.readFeed(ctx, l) // an error leaves the gap to the next push or resync
	}()
}

// readFeed reads the feed after lastSeq, page by page, delivering it to
// OnFeed, until a short page leaves no gap before the buffered pushes. The
// caller has counted it in fetching; readFeed uncounts it.
func (c *Client) readFeed(ctx context.Context, l *link) error {
	defer func() {
		c.deliverMu.Lock()
		c.smu.Lock()
		c.fetching--
		c.smu.Unlock()
		c.drainFeedLocked()
		c.deliverMu.Unlock()
	}()
	for {
		c.smu.Lock()
		after := c.lastSeq
		c.smu.Unlock()
		var out protocol.FeedReply
		if err := l.call(ctx, protocol.OpFeed, protocol.FeedParams{After: after, Limit: feedPage}, &out); err != nil {
			return err
		}
		c.deliverMu.Lock()
		c.deliverFeedLocked(out.Entries)
		c.smu.Lock()
		gap, progressed := len(c.feedBuf) > 0, c.lastSeq > after
		c.smu.Unlock()
		c.deliverMu.Unlock()
		if len(out.Entries) < feedPage && !(gap && progressed) {
			return nil
		}
	}
}

// resync brings a new connection to where the last one was: auth with the
// current token, subscribe with the versions seen, feed after the last seq.
// Without a token (Auth never called, no Options.Token) there is nothing to
// resync.
func (c *Client) resync(l *link) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.dialTimeout)
	defer cancel()
	tok, err := c.currentToken(ctx)
	if err != nil || tok == "" {
		return err
	}
	if _, err := c.authLink(ctx, l, tok); err != nil {
		return err
	}

	c.smu.Lock()
	subs := make([]Sub, 0, len(c.subs))
	for id := range c.subs {
		subs = append(subs, Sub{ID: id, Version: c.versions[id]})
	}
	feedOn := c.feedOn
	c.smu.Unlock()
	slices.SortFunc(subs, func(a, b Sub) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	for chunk := range slices.Chunk(subs, subscribeChunk) {
		ctx, cancel := context.WithTimeout(c.ctx, c.dialTimeout)
		var r SubscribeResult
		err := l.call(ctx, protocol.OpSubscribe, protocol.SubscribeParams{Coupons: chunk}, &r)
		cancel()
		if ce := (*couponmesh.Error)(nil); errors.As(err, &ce) && !retryable[ce.Code] {
			// Reconnecting will not change this answer: report it and
			// carry on with the rest.
			if c.opts.OnError != nil {
				c.opts.OnError(ce)
			}
			continue
		}
		if err != nil {
			return err
		}
		c.deliverMu.Lock()
		for _, cp := range r.Coupons {
			if c.noteCoupon(cp) && c.opts.OnCoupon != nil {
				c.opts.OnCoupon(cp)
			}
		}
		c.deliverMu.Unlock()
		if len(r.Missing) > 0 {
			c.forget(r.Missing...)
		}
	}

	if feedOn {
		c.smu.Lock()
		c.fetching++
		c.smu.Unlock()
		ctx, cancel := context.WithTimeout(c.ctx, c.dialTimeout)
		defer cancel()
		if err := c.readFeed(ctx, l); err != nil {
			return err
		}
	}
	return nil
}
