// The approvals console in a real browser (Debian's Chromium, driven by
// playwright-core): an approver signs in with the keyboard, sees a gated
// call's amount, approves it and the gateway's retry is allowed once,
// rejects another; an approval whose gate names someone else can be neither
// seen nor decided; a wrong password and a form without its CSRF token are
// refused; an operator kills a session and its next call is denied.
//
// Run by tests/suite/console.rs against a server it started:
//   CONSOLE_URL=http://127.0.0.1:PORT SOCKET=/path/to/decision.sock \
//   SCREENSHOTS=/dir node tests/browser/console.mjs
// Exits non-zero, saying which step failed, if anything is not as expected.

import { createRequire } from "node:module";
import net from "node:net";
import path from "node:path";

const require = createRequire(new URL("../mcp/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const url = process.env.CONSOLE_URL;
const socket = process.env.SOCKET;
const shots = process.env.SCREENSHOTS;
if (!url || !socket || !shots) throw new Error("CONSOLE_URL, SOCKET and SCREENSHOTS are required");

let step = "start";
function expect(condition, what) {
  if (!condition) throw new Error(`${step}: ${what}`);
}

/** One request line to the decision socket; its answer. */
function decide(request) {
  return new Promise((resolve, reject) => {
    const client = net.createConnection(socket, () => client.write(JSON.stringify(request) + "\n"));
    let data = "";
    client.on("data", (chunk) => {
      data += chunk;
      const end = data.indexOf("\n");
      if (end >= 0) {
        client.end();
        resolve(JSON.parse(data.slice(0, end)));
      }
    });
    client.on("error", reject);
  });
}

const pay = (amount, session, approval) => ({
  agent: "bot", tool: "pay", session, approval,
  args: { amount, to: "ACME Corp", card: "4111111111111111" },
});

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const shot = (name) => page.screenshot({ path: path.join(shots, name), fullPage: true });

  step = "gated calls through the decision socket";
  const paid = await decide(pay(1250, "s1"));
  expect(paid.decision === "require_approval", JSON.stringify(paid));
  const deploy = await decide({ agent: "bot", tool: "deploy", session: "s1", args: { amount: 1, to: "prod", card: "-" } });
  expect(deploy.decision === "require_approval", JSON.stringify(deploy));
  const small = await decide(pay(300, "s9"));
  expect(small.decision === "require_approval", JSON.stringify(small));

  step = "a wrong password";
  await page.goto(url + "/login");
  await page.getByLabel("Name").fill("alice");
  await page.getByLabel("Password").fill("not-her-password");
  const [refused] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/login") && r.request().method() === "POST"),
    page.getByRole("button", { name: "Sign in" }).click(),
  ]);
  expect(refused.status() === 401, `status ${refused.status()}`);
  await page.getByRole("alert").filter({ hasText: "Wrong name or password." }).waitFor();
  expect((await context.cookies()).length === 0, "no session cookie");
  await shot("console-signin-refused.png");

  step = "signing in with the keyboard";
  await page.getByLabel("Name").focus();
  await page.keyboard.press("Control+A");
  await page.keyboard.type("alice");
  await page.keyboard.press("Tab");
  await page.keyboard.type("alice-pw");
  await page.keyboard.press("Enter");
  await page.waitForURL(url + "/approvals");
  const cookie = (await context.cookies()).find((c) => c.name === "toolgate_session");
  expect(cookie && cookie.httpOnly && cookie.sameSite === "Strict", JSON.stringify(cookie));

  step = "the pending approvals show the amount";
  const listing = await page.locator("main").innerText();
  expect(listing.includes("1250") && listing.includes("ACME Corp"), listing);
  expect(!listing.includes("4111111111111111"), "the card number is redacted");
  expect(!listing.includes(deploy.approval.id), "the release approver's approval is not shown");
  await shot("console-approvals.png");

  step = "an approval whose gate names someone else";
  const other = await page.goto(url + "/approvals/" + deploy.approval.id);
  expect(other.status() === 404, `status ${other.status()}`);
  await page.goto(url + "/approvals/" + small.approval.id);
  const csrf = await page.locator('input[name="csrf"]').first().inputValue();
  const forced = await page.evaluate(async ([id, csrf]) => {
    const r = await fetch(`/approvals/${id}/approve`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ csrf }),
    });
    return [r.status, await r.text()];
  }, [deploy.approval.id, csrf]);
  expect(forced[0] === 403 && forced[1].includes("is not approver"), JSON.stringify(forced));

  step = "a change without the CSRF token";
  const forged = await page.evaluate(async (id) => {
    const r = await fetch(`/approvals/${id}/approve`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ csrf: "0".repeat(64), comment: "forged" }),
    });
    return r.status;
  }, paid.approval.id);
  expect(forged === 403, `status ${forged}`);

  step = "rejecting an approval";
  await page.getByLabel("Comment (recorded in the audit trail)").fill("Not on the approved vendor list");
  await page.getByRole("button", { name: "Reject" }).click();
  await page.getByRole("status").filter({ hasText: "Rejected: pay for agent bot." }).waitFor();
  const rejected = await decide(pay(300, "s9", small.approval.id));
  expect(rejected.decision === "deny", JSON.stringify(rejected));

  step = "approving the payment";
  await page.goto(url + "/approvals");
  await page.getByRole("link", { name: /pay for agent bot/ }).click();
  await page.waitForURL(url + "/approvals/" + paid.approval.id);
  const detail = await page.locator("main").innerText();
  expect(detail.includes("1250") && detail.includes("Payments need finance's approval"), detail);
  await page.getByLabel("Comment (recorded in the audit trail)").fill("Invoice 4411, checked against the PO");
  await shot("console-approval.png");
  await page.getByRole("button", { name: "Approve" }).click();
  await page.getByRole("status").filter({ hasText: "Approved: pay for agent bot." }).waitFor();

  step = "the gateway's retry is allowed once";
  const retried = await decide(pay(1250, "s1"));
  expect(retried.decision === "allow" && retried.reason_code === "approved", JSON.stringify(retried));
  const again = await decide(pay(1250, "s1"));
  expect(again.decision === "require_approval", JSON.stringify(again));

  step = "an approver is not an operator";
  const ops = await page.goto(url + "/operations");
  expect(ops.status() === 403, `status ${ops.status()}`);

  step = "signing out";
  await page.goto(url + "/approvals");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(url + "/login");
  expect((await page.goto(url + "/approvals")).url().endsWith("/login"), "signed out");

  step = "an operator kills a session";
  await page.getByLabel("Name").fill("olivia");
  await page.getByLabel("Password").fill("olivia-pw");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(url + "/approvals");
  await page.getByRole("link", { name: "Operations" }).click();
  await page.waitForURL(url + "/operations");
  // The live tail: decisions made now appear in the table.
  const tail = page.locator("#decisions tbody tr");
  for (let i = 0; i < 20 && (await tail.count()) === 0; i++) {
    await decide({ agent: "bot", tool: "search", session: "s1" });
    await decide({ agent: "intruder", tool: "search", session: "x" });
    await page.waitForTimeout(150);
  }
  await tail.filter({ hasText: "unknown_agent" }).first().waitFor();
  await page.getByLabel("What").selectOption("session");
  await page.getByLabel("Agent", { exact: true }).first().fill("bot");
  await page.getByLabel("Session").fill("s1");
  await page.getByLabel("Reason").fill("Runaway retries on payments");
  await shot("console-operations.png");
  await page.getByRole("button", { name: "Kill" }).click();
  await page.getByRole("status").filter({ hasText: "Killed: session s1 of agent bot." }).waitFor();
  const killed = await decide({ agent: "bot", tool: "search", session: "s1" });
  expect(killed.decision === "deny" && killed.reason_code === "killed", JSON.stringify(killed));
  const others = await decide({ agent: "bot", tool: "search", session: "s2" });
  expect(others.decision === "allow", JSON.stringify(others));
  await page.goto(url + "/operations");
  const operations = await page.locator("main").innerText();
  expect(operations.includes("Runaway retries on payments") && operations.includes("olivia (console)"), operations);

  step = "an operator's form without the CSRF token";
  const noToken = await page.evaluate(async () => {
    const r = await fetch("/revive", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ csrf: "x", scope: "all" }),
    });
    return r.status;
  });
  expect(noToken === 403, `status ${noToken}`);
  const stillKilled = await decide({ agent: "bot", tool: "search", session: "s1" });
  expect(stillKilled.decision === "deny", JSON.stringify(stillKilled));
  console.log("ok: every step of the console passed");
} catch (error) {
  console.error(error.message || String(error));
  process.exitCode = 1;
} finally {
  await browser.close();
}
