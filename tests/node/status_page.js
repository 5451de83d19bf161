// Opens the emulator's status page in Debian's headless Chromium through
// playwright-core, for tests/emulator_status_page.rs: first without the
// token (must be refused), then with it; waits until the page (its script,
// refreshing itself) shows the expected texts, keeps a screenshot, and
// prints one JSON line with what it saw and every URL the page requested.
// Usage: node status_page.js <url-with-token> <url-without-token> <spki-sha256-base64>
//        <screenshot.png> <user-data-dir> <text>...
'use strict';
const path = require('path');
const { chromium } = require(path.join(__dirname, 'node_modules', 'playwright-core'));

const [withToken, withoutToken, spki, screenshot, userDataDir, ...expected] = process.argv.slice(2);

(async () => {
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run',
      // Trust exactly the emulator's server key, nothing else.
      '--ignore-certificate-errors-spki-list=' + spki],
    viewport: { width: 1200, height: 900 },
  });
  const out = { requests: [] };
  try {
    const page = context.pages()[0] || await context.newPage();
    page.on('request', (r) => out.requests.push(r.url()));
    const refused = await page.goto(withoutToken);
    out.noTokenStatus = refused.status();
    out.noTokenText = await page.evaluate(() => document.body.innerText);

    const res = await page.goto(withToken);
    out.status = res.status();
    out.csp = res.headers()['content-security-policy'] || null;
    await page.waitForFunction((texts) => texts.every((t) => document.body.innerText.includes(t)),
      expected, { timeout: 15000 }).catch((e) => { out.waitError = String(e.message); });
    out.text = await page.evaluate(() => document.body.innerText);
    out.attemptRows = await page.$$eval('#attempts tbody tr', (rows) => rows.map((r) => r.innerText));
    await page.screenshot({ path: screenshot, fullPage: true });
    out.ok = !out.waitError;
  } catch (e) {
    out.ok = false;
    out.error = String(e && e.stack || e);
  } finally {
    await context.close();
  }
  console.log(JSON.stringify(out));
})();
