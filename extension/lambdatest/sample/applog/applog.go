// Package applog writes log lines shaped like those of real Lambda
// functions: structured JSON records with request metadata, text lines from
// a framework's logger, the occasional stack trace, and request dumps. Every
// value that varies in production varies here (ids, timings, paths, user
// agents, amounts), drawn from a seeded generator, so the compression ratio
// measured on these lines is the ratio users see (about 8x with sluice's
// zstd), not the 40x of a repeated string.
//
// The sample function writes them, and layer/cost measures stored bytes on
// them. Each line carries "sample id=<requestId>-<i>" as a token so that
// tests can account for every line.
package applog

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"time"
)

// Gen draws lines for one invocation. It is not safe for concurrent use.
type Gen struct {
	rng       *rand.Rand
	requestID string
	user      string
	tenant    string
	trace     string
}

// New returns a generator for the invocation requestID. Its lines depend
// only on requestID, so a test can rebuild them.
func New(requestID string) *Gen {
	h := fnv.New64a()
	h.Write([]byte(requestID))
	s := h.Sum64()
	rng := rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))
	g := &Gen{rng: rng, requestID: requestID}
	g.user = fmt.Sprintf("usr_%08x", rng.Uint32())
	g.tenant = pick(rng, tenants)
	g.trace = fmt.Sprintf("1-%08x-%024x", rng.Uint32(), rng.Uint64()&0xffffffffffffffff)
	return g
}

var (
	tenants  = []string{"acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "cyberdyne"}
	methods  = []string{"GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH"}
	routes   = []string{"/v1/orders/%d", "/v1/orders/%d/items", "/v1/customers/%d", "/v1/carts/%d/checkout", "/v2/search", "/v1/payments/%d/capture", "/health", "/v1/inventory/%d"}
	statuses = []int{200, 200, 200, 200, 200, 201, 204, 304, 400, 401, 404, 409, 429, 500, 503}
	agents   = []string{
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"okhttp/4.12.0", "aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5 md/GOOS#linux md/GOARCH#arm64",
		"python-requests/2.32.3", "Dart/3.4 (dart:io)", "curl/8.7.1",
	}
	loggers = []string{"OrderService", "PaymentClient", "InventoryRepo", "AuthMiddleware", "CartHandler", "SearchIndexer", "NotificationQueue"}
	events  = []string{
		"fetched %d rows from orders in %.1f ms",
		"cache %s for key %s",
		"calling upstream %s attempt %d",
		"validated payload with %d items",
		"published %d messages to queue %s",
		"token verified for subject %s scopes=%s",
		"retrying after throttling, backoff %d ms",
		"wrote item %s to table %s (consumed %.1f WCU)",
	}
	words = strings.Fields(`pending confirmed shipped cancelled refunded express standard pickup eu-west-1 us-east-1
		ap-southeast-2 visa mastercard amex paypal gift-card coupon SPRING24 BLACKFRIDAY none`)
	skus   = []string{"SKU-1042", "SKU-2231", "SKU-7781", "SKU-0093", "SKU-5520", "SKU-3318", "SKU-9004"}
	cities = []string{"Lisbon", "Austin", "Osaka", "Lagos", "Toronto", "Berlin", "Pune", "Santiago", "Perth"}
	// ERROR only when asked: a healthy service's invocations rarely log
	// one, and one would keep the whole invocation whatever the sample rate.
	levels  = []string{"INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "DEBUG", "DEBUG", "DEBUG", "WARN"}
	upnames = []string{"payments.internal:8443", "inventory-svc.local", "dynamodb.us-east-1.amazonaws.com", "api.stripe.com", "sqs.eu-west-1.amazonaws.com"}
	tables  = []string{"orders-prod", "carts-prod", "sessions", "ledger-2024"}
)

func pick[T any](rng *rand.Rand, s []T) T { return s[rng.IntN(len(s))] }

// Line returns the i-th line of the invocation at time now, without its
// newline: about 60% JSON records of 250-450 bytes, 30% text lines of
// 100-200 bytes, and some multi-field records with nested objects of about
// 1 KB. level, when not empty, is the level JSON records carry; else it
// varies like a real service's.
func (g *Gen) Line(i int, now time.Time, level string) []byte {
	rng := g.rng
	lvl := level
	if lvl == "" {
		lvl = pick(rng, levels)
	}
	id := fmt.Sprintf("sample id=%s-%d", g.requestID, i)
	ts := now.UTC().Format("2006-01-02T15:04:05.000Z")
	switch p := rng.IntN(100); {
	case p < 30:
		// A framework's text logger.
		return fmt.Appendf(nil, "%s %-5s [%s] %s %s", ts, lvl, pick(rng, loggers), id, g.event())
	case p < 90:
		route := pick(rng, routes)
		if strings.Contains(route, "%d") {
			route = fmt.Sprintf(route, 100000+rng.IntN(900000))
		}
		rec := map[string]any{
			"timestamp":  ts,
			"level":      lvl,
			"message":    id + " " + g.event(),
			"logger":     pick(rng, loggers),
			"requestId":  g.requestID,
			"traceId":    g.trace,
			"tenant":     g.tenant,
			"userId":     g.user,
			"method":     pick(rng, methods),
			"path":       route,
			"status":     pick(rng, statuses),
			"durationMs": float64(rng.IntN(250000)) / 100,
			"sourceIp":   fmt.Sprintf("%d.%d.%d.%d", 10+rng.IntN(200), rng.IntN(256), rng.IntN(256), 1+rng.IntN(254)),
		}
		if rng.IntN(3) == 0 {
			rec["userAgent"] = pick(rng, agents)
		}
		b, _ := json.Marshal(rec)
		return b
	default:
		rec := map[string]any{
			"timestamp": ts,
			"level":     lvl,
			"message":   id + " order state changed",
			"requestId": g.requestID,
			"traceId":   g.trace,
			"order":     g.order(1 + rng.IntN(5)),
		}
		b, _ := json.Marshal(rec)
		return b
	}
}

func (g *Gen) event() string {
	rng := g.rng
	switch e := pick(rng, events); {
	case strings.HasPrefix(e, "fetched"):
		return fmt.Sprintf(e, rng.IntN(500), float64(rng.IntN(90000))/100)
	case strings.HasPrefix(e, "cache"):
		return fmt.Sprintf(e, pick(rng, []string{"hit", "miss", "stale"}), fmt.Sprintf("%s:%s:%d", g.tenant, pick(rng, []string{"cart", "price", "user"}), rng.IntN(1e6)))
	case strings.HasPrefix(e, "calling"):
		return fmt.Sprintf(e, pick(rng, upnames), 1+rng.IntN(3))
	case strings.HasPrefix(e, "validated"):
		return fmt.Sprintf(e, rng.IntN(40))
	case strings.HasPrefix(e, "published"):
		return fmt.Sprintf(e, 1+rng.IntN(10), fmt.Sprintf("%s-events-%s", g.tenant, pick(rng, words)))
	case strings.HasPrefix(e, "token"):
		return fmt.Sprintf(e, g.user, pick(rng, []string{"orders:read", "orders:write,payments:read", "admin"}))
	case strings.HasPrefix(e, "retrying"):
		return fmt.Sprintf(e, 50<<rng.IntN(5))
	default:
		return fmt.Sprintf(e, fmt.Sprintf("%08x", rng.Uint32()), pick(rng, tables), float64(rng.IntN(100))/10)
	}
}

func (g *Gen) order(items int) map[string]any {
	rng := g.rng
	lines := make([]map[string]any, items)
	total := 0
	for i := range lines {
		q, cents := 1+rng.IntN(4), 199+rng.IntN(20000)
		total += q * cents
		lines[i] = map[string]any{"sku": pick(rng, skus), "qty": q, "unitPrice": float64(cents) / 100, "warehouse": pick(rng, cities)}
	}
	return map[string]any{
		"id":       fmt.Sprintf("ord_%012x", rng.Uint64()&0xffffffffffff),
		"status":   pick(rng, words[:5]),
		"shipping": pick(rng, words[5:8]),
		"payment":  map[string]any{"method": pick(rng, words[11:16]), "last4": fmt.Sprintf("%04d", rng.IntN(10000)), "amount": float64(total) / 100, "currency": pick(rng, []string{"USD", "EUR", "GBP", "JPY"})},
		"coupon":   pick(rng, words[16:]),
		"address":  map[string]any{"city": pick(rng, cities), "zip": fmt.Sprintf("%05d", rng.IntN(100000))},
		"items":    lines,
		"updated":  time.Unix(1.7e9+int64(rng.IntN(1e8)), 0).UTC().Format(time.RFC3339),
	}
}

// Dump returns a text line of exactly n bytes (n >= 200): the prefix
// "sample id=<requestId>-dump request: " and a JSON dump of an incoming
// batch of orders, cut to length, as a function logs its whole event. It
// depends only on requestID and n.
func Dump(requestID string, n int) []byte {
	g := New(requestID + "/dump")
	b := fmt.Appendf(nil, "sample id=%s-dump request: {\"source\":\"aws:sqs\",\"records\":[", requestID)
	for len(b) < n {
		rec, _ := json.Marshal(map[string]any{
			"messageId": fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", g.rng.Uint32(), g.rng.IntN(1<<16), g.rng.IntN(1<<16), g.rng.IntN(1<<16), g.rng.Uint64()&0xffffffffffff),
			"sentAt":    time.Unix(1.7e9+int64(g.rng.IntN(1e8)), 0).UTC().Format(time.RFC3339),
			"tenant":    pick(g.rng, tenants),
			"body":      g.order(1 + g.rng.IntN(4)),
		})
		b = append(append(b, rec...), ',')
	}
	return b[:n]
}
