"""Detectors: per series, the active model, training runs with progress, drift, precision, train,
and each one's events and precision / recall on the organization's labels."""

from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from anomalyhub.lib.errors import ServiceError
from detection.models import Anomaly, Detector, ModelVersion, TrainingRun
from detection.services import detectors as detector_services
from detection.services import evaluation as evaluation_services
from detection.services import history as history_services
from watchlists.models import Series

from .anomaly_views import TIME_FORMAT
from .forms import DetectorForm, RangeForm
from .pages import attempt, org_page
from .timezones import local, regular_hours, zone_label


@org_page
def detector_list(request, actor):
    series = Series.objects.for_actor(actor).filter(kind__in=detector_services.SUPPORTED_SERIES).order_by("symbol")
    form = DetectorForm(request.POST or None, series=series, initial={"series": request.GET.get("series")})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            detector = detector_services.save_detector(actor=actor, detector=Detector(
                series=get_object_or_404(series, pk=data["series"]), kind=data["kind"], threshold=data["threshold"],
                severity=data["severity"]))
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Detector created. Train it to start scoring new points.")
            return redirect("frontend:detector", detector.pk)
    detectors = (Detector.objects.for_actor(actor).select_related("series").order_by("series__symbol", "pk"))
    active = dict(ModelVersion.objects.for_actor(actor).filter(active=True).values_list("detector_id", "version"))
    return render(request, "frontend/detectors.html", {
        "detectors": [(d, active.get(d.pk)) for d in detectors], "form": form, "can_change": actor.can("change")})


@org_page
def detector_detail(request, actor, detector_id):
    detector = get_object_or_404(Detector.objects.for_actor(actor).select_related("series"), pk=detector_id)
    return render(request, "frontend/detector.html", {
        "detector": detector, "can_change": actor.can("change"), "hours": regular_hours(detector.series),
        "versions": detector.versions.order_by("-version").defer("artifact", "baseline")[:20],
        "runs": detector.runs.order_by("-pk")[:20],
        "drift": detector_services.drift(detector),
        "precision": detector_services.precision(Anomaly.objects.filter(detector=detector)),
        "suggestion": detector_services.suggest_threshold(detector)})


@org_page
def detector_evaluation(request, actor, detector_id):
    """Events and their precision / recall from labels over a range (detection.services.evaluation)."""
    detector = get_object_or_404(Detector.objects.for_actor(actor).select_related("series"), pk=detector_id)
    form = RangeForm(request.GET or None)
    chosen = {k: v for k, v in form.cleaned_data.items() if v} if form.is_valid() else {}
    result = None
    try:
        result = evaluation_services.evaluate_detector(detector, **chosen)
    except ServiceError as exc:
        form.add_error(None, exc.message)
    if result:
        for event in result["events"]:
            event["local_start"], event["local_end"] = (local(event[k], detector.series).strftime(TIME_FORMAT)
                                                        for k in ("start", "end"))
    return render(request, "frontend/detector_evaluation.html", {
        "detector": detector, "form": form, "result": result, "zone": zone_label(detector.series)})


@require_POST
@org_page
def detector_train(request, actor, detector_id):
    detector = get_object_or_404(Detector.objects.for_actor(actor), pk=detector_id)
    history = request.POST.get("run_on_history") == "on"
    attempt(request, lambda: history_services.train(actor=actor, detector=detector, run_on_history=history),
            lambda run: f"Training run {run.pk} {run.status}; progress shows below"
                        + ("; then the model runs over the stored history (progress on the series page)."
                           if run.history_run else "."))
    return redirect("frontend:detector", detector.pk)


@require_POST
@org_page
def version_activate(request, actor, detector_id, version_id):
    version = get_object_or_404(ModelVersion.objects.for_actor(actor), pk=version_id, detector_id=detector_id)
    attempt(request, lambda: detector_services.activate_version(actor=actor, version=version),
            f"Model v{version.version} is now active.")
    return redirect("frontend:detector", detector_id)


@org_page
def run_progress(request, actor, detector_id, run_id):
    """A training run's progress as JSON; the detector page polls it while a run is unfinished."""
    run = get_object_or_404(TrainingRun.objects.for_actor(actor), pk=run_id, detector_id=detector_id)
    return JsonResponse({"status": run.status, "progress": run.progress, "message": run.message})
