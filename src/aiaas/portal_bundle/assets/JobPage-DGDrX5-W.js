import{u as se,a as ne,b as re,c as ae,d as oe,e as ie,f as le,r,g as C,h as de,i as $,j as ce,k as e,P as ue,l as me,m as pe,s as w,n as ye,L as be,p as he,E,C as je,o as T,q as fe,t as xe,v as y}from"./index-CoiHIMbv.js";import{M as ge,L as Se}from"./metricBuffer-tAKsDYpJ.js";import"./uplot-Cf2ZdPUc.js";const ve=y(`
  query TrainingJob($id: ID!, $slug: String!) {
    project(slug: $slug) {
      id
      viewerRole
      isArchived
    }
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        state
        attempt
        createdAt
        startedAt
        finishedAt
        reason
        cancelRequestedAt
        trainer
        target
        features
        hyperparameters
        validationFraction
        seed
        modelName
        metricKeys
        latestMetrics
        datasetVersion {
          id
          number
          dataset {
            id
            name
          }
        }
        modelVersion {
          id
          number
          metrics
          model {
            id
            name
          }
        }
      }
    }
  }
`),Pe=y(`
  query JobMetricHistory($id: ID!, $key: String!, $maxPoints: Int!) {
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        metrics(key: $key, maxPoints: $maxPoints) {
          step
          value
        }
      }
    }
  }
`),$e=y(`
  query JobMetricKeys($id: ID!) {
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        metricKeys
      }
    }
  }
`),Ee=y(`
  subscription JobEvents($jobId: ID!, $after: String) {
    jobEvents(jobId: $jobId, after: $after) {
      cursor
      type
      state
      reason
      attempt
      step
      totalSteps
      epoch
      metrics
      examplesPerSecond
      etaSeconds
      modelVersion
    }
  }
`),Te=y(`
  mutation CancelTrainingJob($id: ID!) {
    cancelTrainingJob(id: $id) {
      __typename
      ... on TrainingJobSuccess {
        job {
          id
          state
          cancelRequestedAt
        }
      }
      ...ErrorFields
    }
  }
`),we=1e3,Re=200;function ke(n){if(n.type==="progress")return null;const d=n.type==="state"&&n.state?w(n.state):n.type==="resumed"?`Resumed from step ${n.step??"?"}`:n.type==="checkpoint"?`Checkpoint at step ${n.step??"?"}`:n.type==="model"?"Model version registered":n.type;return{key:n.cursor,label:d,detail:n.reason??null,at:null}}function Ne(){const n=se(),d=n.slug??"",m=n.jobId??"",{session:L}=ne(),f=re(),[{data:p,error:V,fetching:D},b]=ae({query:ve,variables:{id:m,slug:d}});oe("Training job",d);const[,K]=ie(Te),x=le(),[O,F]=r.useState(null),c=r.useMemo(()=>new ge,[m]),[Q,g]=r.useState(0),[h,B]=r.useState(0),[H,R]=r.useState(-1),k=H>=0,[S,q]=r.useState(C),[a,U]=r.useState(null),[G,Y]=r.useState(null);r.useEffect(()=>q(C()),[m]);const s=p?.node?.__typename==="TrainingJob"?p.node:null,j=s?.id,J=r.useRef(null),A=r.useRef(null);A.current=s?s.metricKeys:null;const N=s!==null;r.useEffect(()=>{if(!j||!N)return;let t=!0;const i=async()=>{if(h===0)return A.current??[];const o=await f.query($e,{id:j},{requestPolicy:"network-only"}).toPromise();if(o.error)throw o.error;const u=o.data?.node;return u?.__typename==="TrainingJob"?u.metricKeys:[]};return(async()=>{const o=await i();return Promise.all(o.map(async u=>{const P=await f.query(Pe,{id:j,key:u,maxPoints:we},{requestPolicy:"network-only"}).toPromise();if(P.error)throw P.error;const _=P.data?.node;return[u,_?.__typename==="TrainingJob"?_.metrics:[]]}))})().then(o=>{t&&(c.clear(),c.replay(Object.fromEntries(o)),g(u=>u+1),R(h))}).catch(o=>{t&&(F(o),R(h))}),()=>{t=!1}},[j,N,h,f,c]);const X=r.useCallback(t=>{t.type==="resumed"&&typeof t.step=="number"&&(c.truncateAfter(t.step),g(l=>l+1)),t.type==="progress"&&typeof t.step=="number"&&(c.append(t.step,t.metrics??{})&&g(l=>l+1),U({step:t.step,totalSteps:t.totalSteps??null,epoch:t.epoch??null,examplesPerSecond:t.examplesPerSecond??null,etaSeconds:t.etaSeconds??null}));const i=ke(t);if(i){const l={...i,at:new Date().toISOString()};q(o=>de(o,l,Re))}t.type==="state"&&t.state&&(Y(t.state),$(t.state)&&(b({requestPolicy:"network-only"}),B(l=>l+1))),t.type==="model"&&b({requestPolicy:"network-only"})},[c,b]),z=k&&s!==null&&!$(s.state),I=ce({query:Ee,variables:{jobId:m,after:null},pause:!z,pick:t=>t.jobEvents,cursor:{of:t=>t.cursor,resume:t=>({jobId:m,after:t})},onEvent:X});if(!s)return e.jsx(ue,{query:{data:p,error:V,fetching:D},what:"the job",notFound:"Job not found",slug:d,children:"There is no training job here that you may see."});const v=s.state!=="QUEUED"&&s.state!=="RUNNING"?s.state:G??s.state,W=me(p?.project?.viewerRole,L?.isAdmin??!1),Z=pe(W,"DEVELOPER")&&!$(v)&&!s.cancelRequestedAt&&!p?.project?.isArchived;async function ee(){if(!s)return;const t=s.id;await x.run(()=>K({id:t}),i=>i.cancelTrainingJob),b({requestPolicy:"network-only"})}const te=[{key:"created",label:"Queued",detail:null,at:s.createdAt},...s.startedAt?[{key:"started",label:"Started",detail:null,at:s.startedAt}]:[],...s.cancelRequestedAt?[{key:"cancel",label:"Cancel requested",detail:null,at:s.cancelRequestedAt}]:[],...s.finishedAt?[{key:"finished",label:w(s.state),detail:s.reason??null,at:s.finishedAt}]:[]],M=s.latestMetrics??{};return e.jsxs("section",{children:[e.jsx(ye,{slug:d}),e.jsxs("h1",{ref:J,tabIndex:-1,children:["Training job: ",s.modelName," ",e.jsx("span",{className:`state state-${v.toLowerCase()}`,children:w(v)})]}),e.jsxs("p",{className:"muted",children:[s.trainer," predicting ",e.jsx("strong",{children:s.target}),s.datasetVersion&&e.jsxs(e.Fragment,{children:[" ","from"," ",e.jsxs(be,{to:he.dataset(d,s.datasetVersion.dataset.name),children:[s.datasetVersion.dataset.name," v",s.datasetVersion.number]})]}),s.attempt>1&&` · attempt ${s.attempt}`]}),s.reason&&e.jsxs("p",{children:["Reason: ",s.reason]}),e.jsx(E,{error:O}),e.jsx(E,{error:x.problem}),I.error&&e.jsx(E,{error:I.error}),Z&&e.jsx(je,{className:"danger",question:`Cancel the training of ${s.modelName}? A queued job never runs; a running one stops within a few steps.`,confirm:"Yes, cancel the job",dismiss:"Keep the job",disabled:x.busy,onConfirm:ee,fallbackFocus:J,children:"Cancel job"}),a&&e.jsxs("p",{children:[e.jsx("progress",{"aria-label":"Training progress",max:a.totalSteps??void 0,value:a.step})," Step ",a.step,a.totalSteps!==null&&` of ${a.totalSteps}`,a.epoch!==null&&`, epoch ${a.epoch}`,a.examplesPerSecond!==null&&`, ${T(a.examplesPerSecond)} examples/s`,a.etaSeconds!==null&&`, about ${Math.round(a.etaSeconds)} s left`]}),e.jsx("h2",{children:"Loss and accuracy"}),k?e.jsx(Se,{buffer:c,revision:Q}):e.jsx(fe,{what:"the metric history"}),Object.keys(M).length>0&&e.jsxs(e.Fragment,{children:[e.jsx("h2",{children:"Latest metrics"}),e.jsx("dl",{className:"facts",children:Object.entries(M).map(([t,i])=>e.jsxs("div",{children:[e.jsx("dt",{children:t}),e.jsx("dd",{children:T(i)})]},t))})]}),s.modelVersion&&e.jsxs("p",{children:["Registered model version ",s.modelVersion.model.name," v",s.modelVersion.number,"."]}),e.jsx("h2",{children:"Timeline"}),e.jsxs("ol",{className:"timeline","aria-label":"State timeline",children:[te.map(t=>e.jsxs("li",{children:[e.jsx("strong",{children:t.label})," ",e.jsx("time",{dateTime:t.at??void 0,children:xe(t.at)}),t.detail&&e.jsxs("span",{className:"muted",children:[" ",t.detail]})]},t.key)),S.dropped>0&&e.jsxs("li",{className:"muted",children:[S.dropped," earlier live events are not shown; the recorded ones are above."]}),S.rows.map(t=>e.jsxs("li",{children:[e.jsx("strong",{children:t.label})," ",e.jsx("span",{className:"muted",children:"(live)"}),t.detail&&e.jsxs("span",{className:"muted",children:[" ",t.detail]})]},t.key))]}),e.jsx("h2",{children:"Hyperparameters"}),e.jsxs("dl",{className:"facts",children:[Object.entries(s.hyperparameters??{}).map(([t,i])=>e.jsxs("div",{children:[e.jsx("dt",{children:t}),e.jsx("dd",{children:T(i)})]},t)),e.jsxs("div",{children:[e.jsx("dt",{children:"validation fraction"}),e.jsx("dd",{children:s.validationFraction})]}),e.jsxs("div",{children:[e.jsx("dt",{children:"seed"}),e.jsx("dd",{children:s.seed})]})]})]})}export{Ne as default};
