package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// chromium returns the path of a Chromium or Chrome to drive. Without one
// the test is skipped, unless CONTACTSTOP_BROWSER=required (CI), which
// makes it fail.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CONTACTSTOP_CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CONTACTSTOP_BROWSER") == "required" {
		t.Fatal("CONTACTSTOP_BROWSER=required but no chromium is installed (apt-get install chromium, or set CONTACTSTOP_CHROMIUM)")
	}
	t.Skip("no chromium installed; set CONTACTSTOP_BROWSER=required to make this a failure")
	return ""
}

// TestConsoleInBrowser drives the web console in headless Chromium against a
// real NATS, worker and API: sign in, see the counts, start a clear (dry-run
// count, confirmation naming it), watch it complete, start a large one and
// cancel it, and check the page with axe-core. With
// CONTACTSTOP_SCREENSHOTS=docs/screenshots it saves screenshots there
// (relative to the repository's root).
func TestConsoleInBrowser(t *testing.T) {
	browser := chromium(t)
	began := time.Now()
	// One contact at a time per clear: the large clear runs long enough
	// (seconds) to be cancelled through the page.
	e := v1Setup(t, v1Options{auth: true, console: true, bulkWorkers: 1})
	e.seed("acme", "b", 600, "billing", store.StateQueued)
	e.seed("acme", "s", 150, "sales", store.StateQueued)
	e.seed("acme", "a", 40, "sales", store.StateConnected)
	e.seed("acme", "h", 12, "billing", store.StateOnHold)
	e.seed("acme", "x", 12000, "overflow", store.StateQueued)
	e.seed("globex", "g", 75, "support", store.StateQueued)
	token := e.issue(grant(auth.ActionAll, "instance/*", "instance/*/contact/*"))

	shots := os.Getenv("CONTACTSTOP_SCREENSHOTS")
	if shots != "" && !filepath.IsAbs(shots) {
		shots = filepath.Join("..", shots) // the test runs in httpapi/
	}
	if shots != "" {
		require.NoError(t, os.MkdirAll(shots, 0o755))
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 960),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if shots == "" {
				return nil
			}
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name), png, 0o644)
		})
	}
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx, actions...), what)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		require.NoError(t, err, "read "+sel)
		return s
	}
	// waitText waits until the element's text holds want.
	waitText := func(sel, want string) {
		t.Helper()
		defer func(began time.Time) { t.Logf("waited %s for %q", time.Since(began).Round(time.Millisecond), want) }(time.Now())
		deadline := time.Now().Add(45 * time.Second)
		for {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			s, err := chromedp.Run(actx, chromedp.Text(chromedp.CSS(sel)))
			cancel()
			if err == nil && strings.Contains(s, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: want %q, have %q (%v)", sel, want, s, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	run("open the console and sign in",
		chromedp.Navigate(e.srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		shot("signin.png"),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS(`#main form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="active-count"]`)),
	)
	waitText(`#instances article:first-child [data-testid="active-count"]`, "12,802")
	waitText(`#instances article:nth-child(2) [data-testid="active-count"]`, "75")
	waitText(`[data-testid="live"]`, "Live")
	run("the instances", shot("instances.png"))

	// A clear of the billing queue: count, then confirm the count.
	run("count billing",
		chromedp.SetValue(chromedp.CSS("#clear-instance"), "acme"),
		chromedp.SendKeys(chromedp.CSS("#clear-queues"), "billing"),
		chromedp.Click(chromedp.CSS(`#start-clear button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="dry-run"]`)),
	)
	require.Contains(t, text(`[data-testid="dry-run"]`), "600 contacts of acme match now")
	run("ask to stop them",
		chromedp.ScrollIntoView(chromedp.CSS(`[data-testid="dry-run"]`)),
		shot("dry-run.png"),
		chromedp.Click(chromedp.CSS(`[data-testid="dry-run"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog[open]`)),
		shot("confirm.png"),
	)
	require.Contains(t, text(`dialog[open] h2`), "Stop 600 contacts?")
	// The safe answer has the focus, and Escape keeps the contacts.
	focused, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.textContent`))
	require.NoError(t, err)
	require.Equal(t, "Keep them", focused)
	run("escape", chromedp.KeyEvent(kb.Escape), chromedp.WaitNotPresent(chromedp.CSS(`dialog[open]`)))
	bulks, err := e.st.ListBulks(t.Context(), "acme")
	require.NoError(t, err)
	require.Empty(t, bulks, "nothing was published")
	run("ask again and confirm",
		chromedp.Click(chromedp.CSS(`[data-testid="dry-run"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog[open]`)),
		chromedp.Click(chromedp.CSS(`dialog[open] button.danger`)))
	waitText(`#clears tbody tr:first-child [data-testid="bulk-status"]`, "COMPLETED")
	waitText(`[data-testid="clears-status"]`, "completed: 600 stopped, 0 failed, 0 skipped")
	waitText(`#instances article:first-child [data-testid="active-count"]`, "12,202")

	// A large clear, cancelled while it runs.
	run("count overflow",
		chromedp.SetValue(chromedp.CSS("#clear-queues"), "overflow"),
		chromedp.Click(chromedp.CSS(`#start-clear button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="dry-run"]`)),
	)
	require.Contains(t, text(`[data-testid="dry-run"]`), "12,000 contacts of acme match now")
	run("start it",
		chromedp.Click(chromedp.CSS(`[data-testid="dry-run"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog[open]`)),
		chromedp.Click(chromedp.CSS(`dialog[open] button.danger`)),
	)
	waitText(`#clears tbody tr:first-child [data-testid="bulk-status"]`, "RUNNING")
	// Some progress first, for the screenshot.
	require.Eventually(t, func() bool {
		s := text(`#clears tbody tr:first-child small`)
		return !strings.HasPrefix(s, "0 of") && !strings.HasPrefix(s, "finding")
	}, 20*time.Second, 50*time.Millisecond)
	// An ETA from the start: the dry run's count stands in for the total
	// while the clear is still finding contacts.
	require.Eventually(t, func() bool {
		eta := text(`#clears tbody tr:first-child [data-testid="bulk-eta"]`)
		return eta != "" && eta != "—"
	}, 10*time.Second, 50*time.Millisecond, "the running clear shows an ETA")
	run("watch it run", shot("clear-running.png"))
	run("cancel it",
		chromedp.Click(chromedp.CSS(`#clears tbody tr:first-child button`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog[open]`)),
		chromedp.Click(chromedp.CSS(`dialog[open] button.danger`)),
	)
	waitText(`#clears tbody tr:first-child [data-testid="bulk-status"]`, "CANCELLED")
	waitText(`[data-testid="clears-status"]`, "was cancelled")
	recs, err := e.st.ListBulks(t.Context(), "acme")
	require.NoError(t, err)
	rec := recs[0]
	require.True(t, rec.Cancelled, "the clear completed cancelled")
	require.Less(t, rec.Stopped, 12000, "the cancel stopped it before the end")

	// The emergency clear asks for a confirmation naming the count.
	run("emergency", chromedp.Click(chromedp.CSS(`#instances article:nth-child(2) tbody tr:first-child button.danger`)))
	// The card's button fills the form in (a render later), as an operator
	// sees before submitting.
	require.Eventually(t, func() bool {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](
			`document.querySelector('#em-instance').value + '/' + document.querySelector('#em-queue').value`))
		return err == nil && v == "globex/support"
	}, 10*time.Second, 20*time.Millisecond, "the emergency form shows globex's queue support")
	run("emergency submit",
		chromedp.Click(chromedp.CSS(`#emergency button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog[open]`)),
	)
	require.Contains(t, text(`dialog[open] p`), "75 QUEUED contacts in queue support of globex")
	run("emergency confirm", shot("emergency.png"), chromedp.Click(chromedp.CSS(`dialog[open] button.danger`)))
	waitText(`#instances article:nth-child(2) [data-testid="active-count"]`, "0")
	// A few failures, and a dead letter as the worker writes one
	// (worker/settle.go), for the last two sections.
	e2 := *e
	e2.token = token
	for _, id := range []string{"gone-1", "gone-2", "gone-3"} {
		e2.call("POST", "/v1/instances/acme/stops?wait=10s", map[string]any{"contactId": id}, true)
	}
	dl := nats.NewMsg(events.DeadLetterSubject("acme"))
	dl.Data = []byte(`{"requestId":"r-77","contactId":"c-77","instanceId":"acme","securityUser":"[a token]"}`)
	dl.Header.Set("Contactstop-Error", "store: get contact: nats: timeout")
	dl.Header.Set("Contactstop-Deliveries", "5")
	_, err = e.js.PublishMsg(t.Context(), dl)
	require.NoError(t, err)
	waitText(`#failures article:first-child h3`, "3 failures")
	run("reload", chromedp.Reload())
	waitText(`#deadletters tbody`, "c-77")
	run("the whole page", chromedp.Sleep(300*time.Millisecond), chromedp.ScrollIntoView(chromedp.CSS("h1")), shot("console.png"))

	// Accessibility: axe-core finds no serious or critical violation of
	// WCAG 2 A/AA.
	axe, err := os.ReadFile("console/testdata/axe.min.js")
	require.NoError(t, err)
	type violation struct {
		ID     string `json:"id"`
		Impact string `json:"impact"`
		Help   string `json:"help"`
		Nodes  []struct {
			Target []any `json:"target"`
		} `json:"nodes"`
	}
	_, err = chromedp.Run(ctx, chromedp.Evaluate[any](string(axe)))
	require.NoError(t, err, "load axe-core")
	violations, err := chromedp.Run(ctx, chromedp.Evaluate[[]violation](
		`axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}).then(r => r.violations)`,
		chromedp.EvalAwaitPromise))
	require.NoError(t, err, "run axe-core")
	var serious []string
	for _, v := range violations {
		j, _ := json.Marshal(v.Nodes)
		t.Logf("axe: %s (%s): %s %s", v.ID, v.Impact, v.Help, j)
		if v.Impact == "serious" || v.Impact == "critical" {
			serious = append(serious, fmt.Sprintf("%s: %s", v.ID, v.Help))
		}
	}
	require.Empty(t, serious, "serious accessibility violations")
	t.Logf("browser test took %s", time.Since(began).Round(time.Millisecond))
}
