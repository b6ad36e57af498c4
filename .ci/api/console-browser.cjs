// The operator console as operators use it, in Debian's headless Chromium
// driven by playwright-core, against a real `offers dev`:
//   - the demo customer buys SIM-UNKNOWN over REST (the simulator never
//     tells its outcome, so it waits for review);
//   - the demo operator signs in, resolves it as not provisioned with a
//     note, finds the refund on the customer's page, tops the customer up,
//     makes a partner key and revokes it (the partner API then refuses it),
//     and finds each act with their name and note on the audit page;
//   - the demo viewer sees the pages but has no forms, and a post of theirs
//     is refused;
//   - a form on another origin posting to the console is refused and
//     credits nothing.
// Every request outside the server under test is refused, and the page
// must run no script (the console has none). A screenshot of each page is
// kept in SHOTS_DIR.
//
// usage: node console-browser.cjs BASE_URL SHOTS_DIR
const { chromium } = require("playwright-core");
const http = require("node:http");

const [base, shots] = process.argv.slice(2);
const api = `${base}/api/v1`;
const PASSWORD = "demo-password";

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function rest(path, { token, method = "GET", body } = {}) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const answer = await fetch(`${api}${path}`, { method, headers, body: body && JSON.stringify(body) });
  const text = await answer.text();
  return { status: answer.status, body: text ? JSON.parse(text) : null };
}

async function balance(token) {
  return (await rest("/account/balance/", { token })).body.balance;
}

/// A page of the console, with its screenshot.
async function shot(page, name) {
  const path = `${shots}/${name}.png`;
  await page.screenshot({ path, fullPage: true });
  console.log(`  screenshot ${path}`);
}

async function signIn(browser, username) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, javaScriptEnabled: false });
  const page = await context.newPage();
  await page.route("**/*", (route) => (route.request().url().startsWith(base) ? route.continue() : route.abort()));
  await page.goto(`${base}/console/`);
  check(page.url().endsWith("/console/sign-in"), `not sent to the sign-in page: ${page.url()}`);
  await page.fill("input[name=username]", username);
  await page.fill("input[name=password]", PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  check(page.url() === `${base}/console/`, `${username} did not reach the overview: ${page.url()}`);
  return { context, page };
}

async function flash(page) {
  return (await page.locator(".flash").first().innerText()).trim();
}

async function submit(form) {
  await Promise.all([form.page().waitForNavigation(), form.locator("button[type=submit]").click()]);
}

async function main() {
  // The customer's purchase that will wait for review.
  const login = await rest("/auth/login/", { method: "POST", body: { username: "demo", password: PASSWORD } });
  check(login.status === 200, `demo cannot log in: ${login.status}`);
  const token = login.body.access_token;
  const offers = (await rest("/offers/?limit=200", { token })).body.results;
  const unknown = offers.find((o) => o.code === "SIM-UNKNOWN");
  check(unknown, "no SIM-UNKNOWN offer in the demo catalog");
  const before = await balance(token);
  const bought = await rest("/activation/", { token, method: "POST", body: { offer_id: unknown.id } });
  check(bought.status === 202, `the purchase was not accepted: ${JSON.stringify(bought.body)}`);
  const tx = bought.body.transaction_id;
  console.log(`customer demo bought SIM-UNKNOWN: transaction ${tx}, balance ${before} -> ${await balance(token)}`);

  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const stranger = http.createServer();
  try {
    const { context, page } = await signIn(browser, "operator");
    console.log("operator signed in");
    await shot(page, "overview");

    // Wait for the review queue (the simulator's retries take some seconds).
    const card = page.locator(`#review-${tx}`);
    const deadline = Date.now() + 120_000;
    for (;;) {
      await page.goto(`${base}/console/reviews`);
      if (await card.count()) break;
      check(Date.now() < deadline, "the transaction never reached the review queue");
      await page.waitForTimeout(1000);
    }
    const why = await card.locator("dd").nth(4).innerText();
    console.log(`review queue shows ${tx}: "${why}"`);
    await shot(page, "reviews");
    const form = card.locator("form.resolve");
    await form.locator("input[value=failed]").check();
    const note = "the provider has no record of it (ticket 4711)";
    await form.locator("textarea[name=note]").fill(note);
    await submit(form);
    const resolved = await flash(page);
    check(resolved.includes("resolved as not provisioned"), `no resolution shown: ${resolved}`);
    console.log(`resolved: "${resolved}"`);
    const refunded = await balance(token);
    check(refunded === before, `not refunded exactly: ${before} before, ${refunded} after`);

    // The customer page shows the refund; then a top-up with a reason.
    await page.goto(`${base}/console/customers`);
    await page.fill("input[name=q]", "demo");
    await Promise.all([page.waitForNavigation(), page.click("form.search button")]);
    const row = page.locator("tr", { hasText: tx });
    check((await row.innerText()).includes("FAILED"), "the customer's page does not show the failed transaction");
    check((await page.locator("dd.balance").innerText()).startsWith(`${before} `), "the page's balance is not the refunded one");
    await shot(page, "customer-refunded");
    const topUp = page.locator("form.top-up");
    await topUp.locator("input[name=amount]").fill("250");
    const reason = "goodwill for the outage (ticket 4711)";
    await topUp.locator("textarea[name=reason]").fill(reason);
    await submit(topUp);
    const credited = await flash(page);
    check(credited.includes("Credited 250"), `no top-up shown: ${credited}`);
    check((await balance(token)) === before + 250, "the top-up did not reach the balance once");
    console.log(`topped up: "${credited}"`);
    await shot(page, "customer-topped-up");

    // A partner key made (its secret shown once) and revoked.
    await page.goto(`${base}/console/partners`);
    await shot(page, "partners");
    await Promise.all([page.waitForNavigation(), page.click("a[href='/console/partners/demo-partner']")]);
    await page.fill("form[action$='/keys'] input[name=note]", "a key for the new shop");
    await submit(page.locator("form[action$='/keys']"));
    const made = await flash(page);
    const secret = made.split(": ")[1].split(" ")[0];
    check((await fetch(`${api}/partner/balance/`, { headers: { authorization: `Bearer ${secret}` } })).status === 200,
      "the new key does not work");
    await shot(page, "partner-key-made");
    const keyRow = page.locator("tbody tr").first();
    await keyRow.locator("input[name=note]").fill("the shop's till was stolen");
    await submit(keyRow.locator("form"));
    const revoked = await flash(page);
    check(revoked.includes("revoked"), `no revocation shown: ${revoked}`);
    const refused = await fetch(`${api}/partner/balance/`, { headers: { authorization: `Bearer ${secret}` } });
    check(refused.status === 401, `the revoked key still works: ${refused.status}`);
    console.log(`partner key made and revoked: "${revoked}"; the partner API now answers ${refused.status}`);
    await shot(page, "partner-key-revoked");

    for (const section of ["offers", "jobs"]) {
      await page.goto(`${base}/console/${section}`);
      await shot(page, section);
    }

    // Each act on the audit page, with the operator's name and note.
    await page.goto(`${base}/console/audit?actor=operator`);
    const trail = await page.locator("table.audit tbody").innerText();
    for (const [action, said] of [["transaction.resolve", note], ["credit", reason], ["api_key.revoke", "the shop's till was stolen"]]) {
      check(trail.includes(action) && trail.includes(said), `the audit page lacks ${action} with its note`);
    }
    console.log("audit page: transaction.resolve, credit and api_key.revoke by operator, each with its note");
    await shot(page, "audit");

    // A form on another origin, posting to the console with the operator's
    // session cookie in the browser: refused, nothing credited.
    await page.goto(`${base}/console/customers?q=demo`);
    const target = `${new URL(page.url()).pathname}/top-up`;
    stranger.on("request", (_, response) => {
      response.writeHead(200, { "content-type": "text/html" });
      response.end(`<form method="post" action="${base}${target}"><input name="amount" value="100000">` +
        `<input name="reason" value="free money"><input name="key" value="forged"><button>Win</button></form>`);
    });
    await new Promise((ready) => stranger.listen(0, "127.0.0.1", ready));
    const elsewhere = `http://127.0.0.1:${stranger.address().port}`;
    const evil = await context.newPage();
    await evil.goto(elsewhere);
    const [answer] = await Promise.all([evil.waitForNavigation(), evil.click("button")]);
    check(answer.status() === 403, `a cross-origin form post answered ${answer.status()}`);
    check((await balance(token)) === before + 250, "the cross-origin post credited money");
    console.log(`a form on ${elsewhere} posting to ${target}: ${answer.status()}, nothing credited`);
    await shot(evil, "cross-origin-refused");

    // The viewer sees, has no forms, and cannot act.
    const viewer = await signIn(browser, "viewer");
    await viewer.page.goto(`${base}/console/customers?q=demo`);
    check((await viewer.page.locator("form.top-up").count()) === 0, "the viewer is shown the top-up form");
    await viewer.page.goto(`${base}/console/reviews`);
    check((await viewer.page.locator("form.resolve").count()) === 0, "the viewer is shown resolve forms");
    const csrf = await viewer.page.locator("input[name=csrf]").first().getAttribute("value");
    const post = await viewer.context.request.post(`${base}${target}`, {
      form: { csrf, amount: "100", reason: "viewer tries", key: "viewer" },
      headers: { origin: base },
    });
    check(post.status() === 403, `a viewer's post answered ${post.status()}`);
    check((await balance(token)) === before + 250, "the viewer's post credited money");
    console.log(`viewer: no forms shown; a post with their own token answered ${post.status()}`);
    await shot(viewer.page, "viewer-reviews");
    console.log(`console: review resolved and refunded, top-up, key revoked, audit entries found, viewer and cross-origin refused`);
  } finally {
    stranger.close();
    await browser.close();
  }
}

main().catch((error) => {
  console.error(`console: ${error.message}`);
  process.exit(1);
});
