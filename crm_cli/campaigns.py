"""`crm campaigns ...`: win-back campaigns for scripts: list them, print one's results, train the uplift model."""

from __future__ import annotations

import argparse
import json

from crm_core import platform
from db.engine import database_url, make_engine


def cmd_list(args: argparse.Namespace) -> int:
    from crm_core import campaigns

    engine = make_engine(database_url())
    try:
        with platform.unit_of_work(engine) as session:
            rows = campaigns.list_campaigns(session, platform.SYSTEM)
    finally:
        engine.dispose()
    if args.json:
        keys = ("id", "name", "status", "trigger", "channel", "offer", "targets", "treatment", "control")
        print(json.dumps([platform.jsonable({k: row[k] for k in keys}, decimal=float) for row in rows], indent=2))
    else:
        for row in rows:
            print(f"{row['id']:>4}  {row['name']:<40} {row['status']:<10} {row['targets']:>9,} enrolled "
                  f"({row['control']:,} held out)  {row['trigger']}")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from crm_core import campaigns

    engine = make_engine(database_url())
    try:
        with platform.unit_of_work(engine) as session:
            result = campaigns.campaign_results(session, platform.SYSTEM, args.campaign_id,
                                                at=platform.data_date(session).run_time())
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(platform.jsonable(result, decimal=float), indent=2))
        return 0
    print(f"{result['campaign']['name']} ({result['campaign']['status']}): {result['campaign']['offer']}")
    for group in result["groups"]:
        print(f"  {group['group']:<9} {group['customers']:>9,} customers, conversion {group['conversion_rate']:.2%}, "
              f"revenue per customer {group['revenue_per_customer']:,.2f}")
    if result["conversion"]:
        conversion, cuped, roi = result["conversion"], result["cuped"], result["roi"]
        print(f"  conversion lift {conversion['estimate']:+.2%} (95% CI {conversion['low']:+.2%} to "
              f"{conversion['high']:+.2%}); revenue lift per customer (CUPED) {cuped['estimate']:+,.2f} "
              f"(95% CI {cuped['low']:+,.2f} to {cuped['high']:+,.2f})")
        if roi["roi"] is not None:
            print(f"  incremental ROI {roi['roi']:+.0%} (95% CI {roi['roi_low']:+.0%} to {roi['roi_high']:+.0%})")
    for note in result["notes"]:
        print(f"  {note}")
    return 0


def cmd_train_uplift(args: argparse.Namespace) -> int:
    from ml import uplift

    engine = make_engine(database_url())
    try:
        with platform.unit_of_work(engine) as session:
            row = uplift.train_uplift(session, platform.SYSTEM, at=platform.data_date(session).run_time(),
                                      algorithm=args.algorithm)
            metrics = row.metrics or {}
            print(f"Trained uplift model {row.id} ({row.algorithm}) on {row.train_customers:,} customers of campaigns "
                  f"{', '.join(map(str, row.campaign_ids))}; on {row.test_customers:,} held-out customers the Qini "
                  f"area is {row.qini_area:.4f} against {metrics.get('qini_area_churn', 0):.4f} ranking by "
                  f"{metrics.get('churn_basis')}.")
    finally:
        engine.dispose()
    return 0


def register(sub) -> None:
    group = sub.add_parser("campaigns", help="win-back campaigns")
    commands = group.add_subparsers(dest="campaigns_command", required=True)
    listing = commands.add_parser("list", help="campaigns with their enrolled and held-out customers")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_list)
    results = commands.add_parser("results", help="one campaign's treatment and control results")
    results.add_argument("campaign_id", type=int)
    results.add_argument("--json", action="store_true", help="print JSON")
    results.set_defaults(func=cmd_results)
    train = commands.add_parser("train-uplift", help="train the uplift model on finished campaigns")
    train.add_argument("--algorithm", choices=("x_learner", "two_model"), default="x_learner")
    train.set_defaults(func=cmd_train_uplift)
